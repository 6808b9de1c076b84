"""Echo return loss enhancement of an echo canceller in far-end single talk, whole-signal and
segmental (dB)."""

from __future__ import annotations


import torch
from torch import Tensor

from audiomask.metrics.energy import check_time, ratio_db, result_dtype


def erle(mic: Tensor, est: Tensor, eps: float = 1e-8) -> Tensor:
    r"""Echo return loss enhancement (dB) over the whole signal.

    ``10 log10((Σ mic² + eps) / (Σ est² + eps))``: how much quieter the canceller's output
    ``est`` is than its microphone input ``mic``. Meaningful in **far-end single talk**,
    where everything in ``mic`` is echo (and noise) to be removed. An identity "canceller"
    scores exactly 0 dB; perfect removal of a noiseless echo scores
    ``10 log10(Σ mic² / eps)``. Shapes: ``[..., T]`` (broadcastable) → ``[...]``.
    """
    check_time(est, mic)
    dtype = result_dtype(mic, est)
    mic, est = mic.to(dtype), est.to(dtype)
    return ratio_db(mic.square().sum(-1), est.square().sum(-1), eps)


def segmental_erle(mic: Tensor, est: Tensor, frame: int = 320, hop: int | None = None,
                   active_db: float = 40.0, eps: float = 1e-8) -> Tensor:
    r"""Segmental ERLE (dB): the mean of per-frame ERLEs over the frames that carry echo.

    The signals are cut into frames of ``frame`` samples every ``hop`` (default
    ``frame // 2``; 320/160 is 20/10 ms at 16 kHz), the ERLE of each frame is
    ``10 log10((Σ mic² + eps) / (Σ est² + eps))``, and the mean is taken over the frames whose
    microphone energy is within ``active_db`` dB of the loudest frame (the silent frames have
    no echo to remove; averaging their 0 dB in would dilute the score). A global ERLE is
    dominated by the loud frames; the segmental one weighs every active frame the same, so it
    also shows how well quiet echo tails are removed. Identity: 0 dB. Signals shorter than a
    frame are one frame. Shapes: ``[..., T]`` → ``[...]``.
    """
    check_time(est, mic)
    hop = hop or frame // 2
    if frame < 1 or hop < 1:
        raise ValueError(f"frame and hop must be >= 1, got {frame} and {hop}")
    dtype = result_dtype(mic, est)
    mic, est = torch.broadcast_tensors(mic.to(dtype), est.to(dtype))
    if mic.shape[-1] < frame:
        frame = mic.shape[-1]
    e_mic = mic.unfold(-1, frame, hop).square().sum(-1)  # [..., frames]
    e_est = est.unfold(-1, frame, hop).square().sum(-1)
    per_frame = ratio_db(e_mic, e_est, eps)
    loudest = e_mic.amax(-1, keepdim=True)
    active = (e_mic > loudest * 10 ** (-active_db / 10)) & (e_mic > 0)
    count = active.sum(-1)
    total = torch.where(active, per_frame, torch.zeros_like(per_frame)).sum(-1)
    return torch.where(count > 0, total / count.clamp_min(1), torch.zeros_like(total))
