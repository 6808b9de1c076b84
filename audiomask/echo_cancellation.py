"""Echo cancellation of tensors and files with an AEC model (``model(mic, far_end)``).

The microphone and far-end signals must share one sample rate and one length (a canceller
compares them sample by sample: a mismatch is a setup error, refused with both values named);
they are resampled to the model's rate and the outputs back to theirs.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from audiomask.audio import AudioError, read_audio, resample
from audiomask.outputs import limit_peak, write_outputs
from audiomask.streaming.blocks import block_samples
from audiomask.tasks import ECHO_CANCELLATION, task_of


#: inputs longer than this go through the model's exact stream, this many seconds a block
LONG_INPUT_BLOCK_S = 30.0


def check_aec_model(model: torch.nn.Module, label: str = "model") -> None:
    """Refuse a model that is not an echo canceller, naming it."""
    if task_of(model) is not ECHO_CANCELLATION:
        raise ValueError(f"{label} ({getattr(model, 'name', type(model).__name__)}) is not an echo canceller; "
                         "use an AEC model such as d3net-aec")


def cancel_echo(model: torch.nn.Module, mic: torch.Tensor, far: torch.Tensor, sample_rate: int | None = None,
                return_all: bool = False) -> torch.Tensor:
    """Near-end estimate ``[T]`` (with ``return_all``: ``[3, T]`` near-end, echo, noise) of the
    microphone signal ``mic [T]`` given the far-end reference ``far [T]``, at ``sample_rate``
    (default: the model's). Inputs longer than ``LONG_INPUT_BLOCK_S`` run block by block
    through the model's exact stream (same result, memory bounded by a block)."""
    check_aec_model(model)
    rate = sample_rate or model.sample_rate
    if mic.shape != far.shape:
        raise ValueError(f"microphone and far-end signals differ in shape: {tuple(mic.shape)} vs {tuple(far.shape)}")
    device = next(model.parameters()).device
    x = resample(torch.stack([mic, far]).float(), rate, model.sample_rate)
    block = int(LONG_INPUT_BLOCK_S * model.sample_rate)
    if x.shape[-1] <= block:
        with torch.inference_mode():
            est = model.eval()(x[0].to(device), x[1].to(device), return_all=return_all).cpu()
    else:  # the exact stream in long blocks: equal to one pass, device memory bounded by a block
        est, _ = cancel_echo_stream(model, x[0], x[1], block, return_all)
    return resample(est, model.sample_rate, rate)[..., : mic.shape[-1]]


@dataclass
class StreamReport:
    """Timing of a block-by-block (simulated real-time) run."""

    block: int
    sample_rate: int
    latency_samples: int
    block_times: list[float] = field(default_factory=list)

    def __str__(self) -> str:
        times = sorted(self.block_times) or [0.0]
        budget = self.block / self.sample_rate
        p99 = times[min(len(times) - 1, int(0.99 * len(times)))]
        mean = sum(times) / len(times)
        misses = sum(t > budget for t in times)
        return (f"block {self.block} samples ({1000 * budget:.1f} ms); algorithmic latency "
                f"{self.latency_samples} samples ({1000 * self.latency_samples / self.sample_rate:.1f} ms) + block; "
                f"processing per block mean {1000 * mean:.2f} ms, p99 {1000 * p99:.2f} ms, "
                f"RTF {mean / budget:.3f}; deadline misses {misses}/{len(times)}")


def cancel_echo_stream(model: torch.nn.Module, mic: torch.Tensor, far: torch.Tensor, block: int,
                       return_all: bool = False) -> tuple[torch.Tensor, StreamReport]:
    """:func:`cancel_echo` block by block through ``model.stream()`` (at the model's rate),
    as a sound card would feed it; the result (on the CPU) equals the offline one."""
    check_aec_model(model)
    if block < 1:
        raise ValueError(f"block must be >= 1 sample, got {block}")
    session = model.eval().stream(return_all=return_all)
    report = StreamReport(block, model.sample_rate, session.latency_samples)
    outs = []
    for start in range(0, mic.shape[-1], block):
        t0 = time.perf_counter()
        outs.append(session.process(mic[start : start + block], far[start : start + block]).cpu())
        report.block_times.append(time.perf_counter() - t0)
    outs.append(session.flush().cpu())
    return torch.cat(outs, dim=-1), report


def read_pair(mic_path: str | os.PathLike, far_path: str | os.PathLike, downmix: bool = False
              ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Read the microphone and far-end files: ``(mic [T], far [T], rate)``; refuses different
    rates or lengths (naming both files and values)."""
    mic, mic_rate = read_audio(mic_path, channels=1, downmix=downmix)
    far, far_rate = read_audio(far_path, channels=1, downmix=downmix)
    if mic_rate != far_rate:
        raise AudioError(far_path, f"is at {far_rate} Hz but the microphone file {mic_path} is at {mic_rate} Hz; "
                                   "the two signals must share one sample rate")
    if mic.shape[-1] != far.shape[-1]:
        raise AudioError(far_path, f"has {far.shape[-1]} samples but the microphone file {mic_path} has "
                                   f"{mic.shape[-1]}; the two signals must be time-aligned recordings of one length")
    return mic[0], far[0], mic_rate


def output_files(mic_path: str | os.PathLike, out_path: str | os.PathLike | None = None,
                 write_all: bool = False) -> list[Path]:
    """Where :func:`cancel_echo_files` writes: ``out_path`` (default ``<mic stem>_near.wav``
    beside the microphone file), then with ``write_all`` ``<stem>_echo`` / ``<stem>_noise``
    beside it."""
    mic_path = Path(mic_path)
    out = Path(out_path) if out_path is not None else mic_path.with_name(f"{mic_path.stem}_near.wav")
    if not write_all:
        return [out]
    return [out] + [out.with_name(f"{out.stem}_{kind}{out.suffix}") for kind in ("echo", "noise")]


def cancel_echo_files(model: torch.nn.Module, mic_path: str | os.PathLike, far_path: str | os.PathLike,
                      targets: Sequence[str | os.PathLike], stream_block_ms: float | None = None,
                      downmix: bool = False, subtype: str = "FLOAT"
                      ) -> tuple[list[Path], StreamReport | None, float]:
    """Write the near-end estimate of ``mic_path`` to ``targets[0]`` (and the echo and noise
    estimates to ``targets[1:]``, when given: see :func:`output_files`) at the input's rate,
    as ``subtype``. With ``stream_block_ms`` the model runs block by block (exact streaming)
    and a timing report is returned.

    The estimates (masked microphone signals, so at its level already) are scaled down together
    when one would peak above full scale (:func:`audiomask.outputs.limit_peak`). Returns
    ``(paths written, report, that factor)``.
    """
    mic, far, rate = read_pair(mic_path, far_path, downmix)
    targets = [Path(t) for t in targets]
    inputs = {Path(mic_path).resolve(), Path(far_path).resolve()}
    if any(t.resolve() in inputs for t in targets):
        raise AudioError(targets[0], "is one of the inputs; inputs are never overwritten")
    report = None
    if stream_block_ms is None:
        est = cancel_echo(model, mic, far, rate, return_all=True)
    else:
        block = block_samples(stream_block_ms, model.sample_rate)
        x = resample(torch.stack([mic, far]), rate, model.sample_rate)
        est, report = cancel_echo_stream(model, x[0], x[1], block, return_all=True)
        est = resample(est, model.sample_rate, rate)[..., : mic.shape[-1]]
    est, peak_scale = limit_peak(est)
    return write_outputs(targets, est[: len(targets)], rate, subtype), report, peak_scale
