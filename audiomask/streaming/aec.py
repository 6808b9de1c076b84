"""Exact stateful streaming for echo cancellers: two inputs (microphone, far-end) per block.

The same pieces as :class:`~audiomask.streaming.stateful.StreamingSession`, with a second
input: the STFT encoder steps each signal (frames appear as their last sample arrives), the
causal masker steps on the new frames with each conv's history, and the iSTFT decoder
overlap-adds them, keeping the samples later frames still add to. A block of ``n`` samples
costs work proportional to ``n``; the concatenated outputs equal ``model(mic, far_end)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from audiomask.streaming.blocks import as_float_block, check_nonfinite_policy, check_sample_rate, finite_block


class AECStreamingSession:
    """A stream through a causal echo canceller (e.g. :class:`~audiomask.models.aec.D3NetAEC`).

    ``process(mic_block, far_block)`` any number of times — blocks ``[n]`` or ``[batch, n]``,
    the two of the same length, ``n`` free to change between calls (0 allowed) — then
    ``flush()``. Each call returns the near-end samples that are final so far (``[m]`` /
    ``[batch, m]``; with ``return_all``, ``[3, m]`` / ``[batch, 3, m]``: near-end, echo,
    noise); all outputs together have the input's length and equal the offline pass.
    Blocks are taken as :class:`~audiomask.streaming.StreamingSession` takes them (torch or
    numpy, integer PCM scaled, ``sample_rate`` checked when given, NaN/Inf refused or, with
    ``nonfinite="zero"``, zeroed and counted in ``nonfinite_samples``; a refused pair of blocks
    leaves the stream unchanged); ``flush()`` first gives an empty output.

    Latency: the STFT's look-ahead, ``win`` samples at most (20 ms for the 320/160 STFT at
    16 kHz), plus the wait for the block that completes a frame; the masker adds none.
    """

    def __init__(self, model: torch.nn.Module, batch: int = 1, return_all: bool = False,
                 sample_rate: int | None = None, nonfinite: str = "error") -> None:
        check_sample_rate(sample_rate, model)
        self.nonfinite = check_nonfinite_policy(nonfinite)
        if not getattr(model, "causal", False):
            raise ValueError(f"{model.name} is not causal: exact streaming needs a causal model")
        if model.training:
            raise ValueError("streaming needs the model in eval mode (batch norm uses its running "
                             "statistics there): call model.eval() first")
        self.model, self.batch, self.return_all = model, batch, return_all
        device = next(model.parameters()).device
        self._mic = model.encoder.initial_state(batch, device)
        self._far = model.encoder.initial_state(batch, device)
        self._mask = model.masker.initial_state(batch, device)
        self._dec = model.decoder.initial_state((batch, 3 if return_all else 1), device)
        self.received = self.nonfinite_samples = 0
        self.finished = False
        self._unbatched = batch == 1  # flush() before any block: shaped as for [n] blocks

    @property
    def latency_samples(self) -> int:
        """Algorithmic latency: the STFT window (samples)."""
        return self.model.encoder.win

    @torch.inference_mode()
    def process(self, mic_block: Tensor, far_block: Tensor) -> Tensor:
        if self.finished:
            raise RuntimeError("this stream was flushed; start a new one with model.stream()")
        mic, far, unbatched = self._as_batch(mic_block, far_block)
        mic, zeroed_mic = finite_block(mic, self.nonfinite, "microphone block")  # refused: nothing has changed
        far, zeroed_far = finite_block(far, self.nonfinite, "far-end block")
        self.nonfinite_samples += zeroed_mic + zeroed_far
        self._unbatched = unbatched
        self.received += mic.shape[-1]
        rep_mic, self._mic = self.model.encoder.step(mic, self._mic)
        rep_far, self._far = self.model.encoder.step(far, self._far)
        return self._out(self._decode(rep_mic, rep_far))

    @torch.inference_mode()
    def flush(self) -> Tensor:
        """End the stream as the offline pass ends the signals (the STFT's right padding)."""
        if self.finished:
            raise RuntimeError("this stream was already flushed")
        self.finished = True
        rep_mic, self._mic = self.model.encoder.finish(self._mic)
        rep_far, self._far = self.model.encoder.finish(self._far)
        wav = self._decode(rep_mic, rep_far)
        rest, self._dec = self.model.decoder.finish(self._dec, self.received)
        return self._out(torch.cat([wav, rest], dim=-1))

    # -----------------------------------------------------------------------------------------
    def _as_batch(self, mic: Tensor, far: Tensor) -> tuple[Tensor, Tensor, bool]:
        mic, far = as_float_block(mic, "microphone block"), as_float_block(far, "far-end block")
        if mic.shape != far.shape:
            raise ValueError(f"microphone and far-end blocks must have the same shape, got "
                             f"{tuple(mic.shape)} and {tuple(far.shape)}")
        unbatched = mic.dim() == 1
        if unbatched:
            mic, far = mic.unsqueeze(0), far.unsqueeze(0)
        if mic.dim() != 2 or mic.shape[0] != self.batch:
            shape = tuple(mic.shape[1:] if unbatched else mic.shape)
            raise ValueError(f"expected blocks [n] or [{self.batch}, n], got shape {shape}")
        dtype = self._mic.buf.dtype
        return mic.to(self._mic.buf.device, dtype), far.to(self._mic.buf.device, dtype), unbatched

    def _decode(self, rep_mic: Tensor, rep_far: Tensor) -> Tensor:
        model = self.model
        masks, self._mask = model.masker.step(rep_mic, rep_far, self._mask)
        masked = model.apply_masks(rep_mic, masks, self.return_all)
        wav, self._dec = model.decoder.step(masked, self._dec)
        return wav

    def _out(self, wav: Tensor) -> Tensor:
        if not self.return_all:
            wav = wav[:, 0]
        return wav[0] if self._unbatched and self.batch == 1 else wav
