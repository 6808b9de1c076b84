"""Datasets: dynamic mixing of speech (with optional recorded or synthesised noise and
reverberation), speaker-disjoint splits, and fixed mixtures from a manifest (CSV/JSON) or a ``mix/ s1/ s2/ …`` folder."""

from audiomask.data.aec import AECChallengeDataset, EchoSimulationDataset, loudspeaker_nonlinearity
from audiomask.data.dynamic_mixing import DynamicMixingDataset
from audiomask.data.manifest import (
    ManifestError,
    MixtureDataset,
    MixtureEntry,
    MixtureExample,
    read_manifest,
    scan_mixture_dir,
)
from audiomask.data.noise import BackgroundNoise, noise_spans
from audiomask.data.reverb import RIR, MeasuredRIRs, RoomSimulator, convolve, direct_path_index
from audiomask.data.speakers import audio_files, find_audio, speaker_of, split_by_speaker
from audiomask.data.synthetic_noise import NoiseSynthesizer, babble, coloured_noise

__all__ = ["DynamicMixingDataset", "MeasuredRIRs", "RIR", "RoomSimulator", "convolve",
           "direct_path_index", "audio_files", "find_audio", "speaker_of", "split_by_speaker",
           "ManifestError", "MixtureDataset", "MixtureEntry", "MixtureExample", "read_manifest",
           "scan_mixture_dir", "EchoSimulationDataset", "AECChallengeDataset", "loudspeaker_nonlinearity",
           "NoiseSynthesizer", "babble", "coloured_noise", "BackgroundNoise", "noise_spans"]
