"""Separation: one mixture in, one estimate per source out; PIT SI-SDR objective and score."""

from __future__ import annotations

from typing import Any

from torch import Tensor
from torch.utils.data import Dataset

from audiomask.losses import pit_si_sdr_loss
from audiomask.metrics import pit, si_sdr
from audiomask.tasks.base import TASKS, Task


class Separation(Task):
    name = "separation"
    inputs = ("mixture",)
    losses = {"pit_si_sdr": pit_si_sdr_loss}
    default_loss = "pit_si_sdr"

    def datasets(self, data: Any, sample_rate: int, n_src: int, total: int, seed: int) -> tuple[Dataset, Dataset]:
        """Dynamic mixing of ``data.speech_dir`` (speaker-disjoint split; noise, reverberation
        and speed perturbation as configured) or fixed mixtures from two manifests."""
        d = data
        if d.speech_dir:
            from audiomask.data import DynamicMixingDataset, find_audio, noise_spans, split_by_speaker

            train_files, valid_files = split_by_speaker(find_audio(d.speech_dir), d.valid_speakers, seed=0)
            extra: dict[str, Any] = {}
            if d.noise_dir:
                extra.update(noise_files=find_audio(d.noise_dir))
            if d.noise_dir or d.synthetic_noise > 0:
                extra.update(snr_db=tuple(d.snr_db), synthetic_noise=d.synthetic_noise,
                             noise_prob=d.mix_noise_prob)
            if d.reverb_prob > 0 and (d.rir_dir or d.simulate_rooms):
                extra.update(rir_files=find_audio(d.rir_dir) if d.rir_dir else None,
                             simulate_rooms=d.simulate_rooms, reverb_prob=d.reverb_prob,
                             reverberant_target=d.reverberant_target)
            train_span, valid_span = noise_spans(d.noise_split)
            train = DynamicMixingDataset(train_files, sample_rate, d.segment, n_src, length=total,
                                         sir_db=d.sir_db, seed=seed,
                                         speed_perturb=d.speed_perturb, noise_span=train_span, **extra)
            valid = DynamicMixingDataset(valid_files, sample_rate, d.valid_segment, n_src,
                                         length=d.valid_mixtures, sir_db=d.sir_db,
                                         seed=seed + 10_000, noise_span=valid_span, **extra)
            return train, valid
        if d.train_manifest and d.valid_manifest:
            from audiomask.data import MixtureDataset

            train = MixtureDataset(d.train_manifest, sample_rate=sample_rate, segment=d.segment, seed=seed)
            return train, MixtureDataset(d.valid_manifest, sample_rate=sample_rate)
        raise ValueError("data: set speech_dir (dynamic mixing) or both train_manifest and valid_manifest")

    def validation_gain(self, model, example: tuple[Tensor, ...]) -> float:
        """Mean SI-SDRi over the sources (best permutation)."""
        mix, src = example[:2]
        _, _, scores = pit(model(mix), src)
        return (scores - si_sdr(mix[:, None].expand_as(src), src)).mean().item()


SEPARATION = TASKS["separation"]
