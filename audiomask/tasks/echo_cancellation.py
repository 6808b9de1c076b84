"""Echo cancellation: microphone and far-end reference in, the near-end talker out (the model
also estimates the echo and the noise, which the objectives use)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from audiomask.losses import aec_loss, aec_near_end_loss
from audiomask.metrics import erle, si_sdr
from audiomask.tasks.base import TASKS, Task

#: every SI-SDR and ERLE of the validation score is capped here (dB): a clean near-end-only
#: clip has an unbounded input SI-SDR, an all-zero output an unbounded ERLE
VALIDATION_CAP_DB = 30.0


class EchoCancellation(Task):
    name = "aec"
    inputs = ("microphone", "far_end")
    losses = {"aec": aec_loss, "aec_near_end": aec_near_end_loss}
    default_loss = "aec"

    def datasets(self, data: Any, sample_rate: int, n_src: int, total: int, seed: int) -> tuple[Dataset, Dataset]:
        """Simulated echo scenes from ``data.speech_dir`` (speaker-disjoint train/validation), or
        the AEC Challenge synthetic folder ``data.aec_dir`` (its train/test split)."""
        d, rate = data, sample_rate
        if d.aec_dir:
            from audiomask.data import AECChallengeDataset

            train = AECChallengeDataset(d.aec_dir, rate, split="train", segment=d.segment, seed=seed, length=total)
            valid = AECChallengeDataset(d.aec_dir, rate, split="test", segment=d.valid_segment, seed=seed + 10_000)
            if len(valid) > d.valid_mixtures:
                valid = AECChallengeDataset(d.aec_dir, rate, split="test", segment=d.valid_segment,
                                            seed=seed + 10_000, fileids=valid.fileids[: d.valid_mixtures])
            return train, valid
        if not d.speech_dir:
            raise ValueError("data: an AEC model trains on speech_dir (simulated echo scenes) or aec_dir "
                             "(AEC Challenge synthetic layout)")
        from audiomask.data import EchoSimulationDataset, find_audio, noise_spans, split_by_speaker

        train_files, valid_files = split_by_speaker(find_audio(d.speech_dir), d.valid_speakers, seed=0)
        extra: dict[str, Any] = dict(
            rir_files=find_audio(d.rir_dir) if d.rir_dir else None, simulate_rooms=d.simulate_rooms,
            noise_files=find_audio(d.noise_dir) if d.noise_dir else None, noise_prob=d.noise_prob,
            snr_db=tuple(d.snr_db), ser_db=tuple(d.ser_db), delay_ms=tuple(d.echo_delay_ms),
            nonlinear_prob=d.nonlinear_prob, path_change_prob=d.path_change_prob,
            scenario_probs=tuple(d.scenarios), nonlinearities=tuple(d.nonlinearities),
            near_reverb_prob=d.near_reverb_prob, synthetic_noise=d.synthetic_noise)
        train_span, valid_span = noise_spans(d.noise_split)
        train = EchoSimulationDataset(train_files, rate, d.segment, length=total, seed=seed,
                                      noise_span=train_span, **extra)
        valid = EchoSimulationDataset(valid_files, rate, d.valid_segment, length=d.valid_mixtures,
                                      seed=seed + 10_000, noise_span=valid_span, **extra)
        return train, valid

    def training_output(self, net: torch.nn.Module, inputs: list[Tensor]) -> Tensor:
        """``[B, 3, T]``: near-end, echo and noise estimates (the objectives use all three)."""
        return net(*inputs, return_all=True)

    def validation_gain(self, model, example: tuple[Tensor, ...]) -> float:
        """Improvement over passing the microphone through (dB): near-end SI-SDRi on clips with
        near-end speech (double talk, near-end single talk), ERLE on far-end single talk — each
        capped at :data:`VALIDATION_CAP_DB`."""
        mic, far, targets = example[:3]
        est = model(mic, far)
        near, cap = targets[:, 0], VALIDATION_CAP_DB
        if near.abs().amax() > 0:
            gain = si_sdr(est, near).clamp(max=cap) - si_sdr(mic, near).clamp(max=cap)
        else:
            gain = erle(mic, est).clamp(max=cap)
        return gain.mean().item()


ECHO_CANCELLATION = TASKS["aec"]
