"""Datasets: dynamic mixing of speech and speaker-disjoint splits."""

from audiomask.data.dynamic_mixing import DynamicMixingDataset
from audiomask.data.speakers import find_audio, speaker_of, split_by_speaker

__all__ = ["DynamicMixingDataset", "find_audio", "speaker_of", "split_by_speaker"]
