"""Exact stateful streaming for causal encoder–masker–decoder models.

Every layer that looks back keeps exactly what it needs between calls: the conv encoder its
not-yet-framed samples, cumulative layer norms their running sums, each causal depthwise
conv its last ``(P-1)·d`` inputs, the transposed-conv decoder its overlap-add tail. A block
of ``n`` samples therefore costs work proportional to ``n`` (no receptive field is
recomputed), and the concatenated outputs equal the offline forward pass over the whole
signal to float32 precision.
"""

from __future__ import annotations

import torch

from audiomask.streaming.blocks import as_float_block, check_nonfinite_policy, check_sample_rate, finite_block


class StreamingSession:
    """A stream through a causal model: ``process(block)`` any number of times, then ``flush()``.

    Blocks are ``[n]`` or ``[batch, n]`` with any ``n`` (it may change from call to call, and
    may be 0): torch tensors or numpy arrays, float samples or integer PCM (int16, int32, …:
    scaled to [-1, 1)), at the model's rate (give ``sample_rate`` to have that checked: a
    stream is not resampled). ``process`` returns the samples that are final so far,
    ``[n_src, m]`` (or ``[batch, n_src, m]``); ``flush`` returns the rest (also when nothing was
    processed), so that all outputs together have the input's length and equal
    ``model(whole_input)``.

    A block with NaN/Inf samples is refused with a ``ValueError`` before any state changes, so
    the stream goes on as if it had not been sent (``nonfinite="error"``); with
    ``nonfinite="zero"`` those samples are taken as 0 and counted in ``nonfinite_samples``.

    Latency: an input sample leaves ``L - 1`` samples later at the most (the encoder window),
    plus the wait for the block that completes its frame.
    """

    def __init__(self, model: torch.nn.Module, batch: int = 1, sample_rate: int | None = None,
                 nonfinite: str = "error") -> None:
        check_sample_rate(sample_rate, model)
        self.nonfinite = check_nonfinite_policy(nonfinite)
        if not model.causal:
            raise ValueError(f"{model.name} is not causal: exact streaming needs a causal model "
                             "(use chunked inference for non-causal ones)")
        for part in (model.encoder, model.masker, model.decoder):
            if not hasattr(part, "step"):
                raise ValueError(f"{type(part).__name__} has no streaming step")
        self.model, self.batch = model, batch
        device = next(model.parameters()).device
        self._enc = model.encoder.initial_state(batch, device)
        self._mask = model.masker.initial_state(batch, device)
        self._dec = model.decoder.initial_state((batch, model.n_src), device)
        self._drop = self._enc.shape[-1]  # decoder samples that belong to the left padding
        self.received = self.emitted = self.nonfinite_samples = 0
        self.finished = False
        self._unbatched = batch == 1  # flush() before any block: shaped as for [n] blocks

    @property
    def latency_samples(self) -> int:
        """Algorithmic latency: the encoder window ``L`` (samples)."""
        return self.model.encoder.win

    @torch.inference_mode()
    def process(self, block: torch.Tensor) -> torch.Tensor:
        if self.finished:
            raise RuntimeError("this stream was flushed; start a new one with model.stream()")
        x, unbatched = self._as_batch(block)
        x, zeroed = finite_block(x, self.nonfinite)  # refused: nothing has changed yet
        self.nonfinite_samples += zeroed
        self._unbatched = unbatched
        self.received += x.shape[-1]
        return self._out(self._run(x), unbatched)

    @torch.inference_mode()
    def flush(self) -> torch.Tensor:
        """Finish the stream as the offline pass ends a signal (its right padding)."""
        if self.finished:
            raise RuntimeError("this stream was already flushed")
        self.finished = True
        right = self.model.encoder.framing.pads(self.received)[1]
        device = self._enc.device
        wav = self._run(torch.zeros(self.batch, right, device=device), final_tail=True)
        missing = self.received - self.emitted
        if wav.shape[-1] < missing:  # "valid" framing drops an incomplete last frame: zeros
            wav = torch.nn.functional.pad(wav, (0, missing - wav.shape[-1]))
        wav = wav[..., :missing]
        self.emitted += wav.shape[-1]
        return self._out(wav, self.batch == 1 and self._unbatched)

    # -----------------------------------------------------------------------------------------
    def _as_batch(self, block: torch.Tensor) -> tuple[torch.Tensor, bool]:
        block = as_float_block(block)
        unbatched = block.dim() == 1
        x = block.unsqueeze(0) if unbatched else block
        if x.dim() != 2 or x.shape[0] != self.batch:
            raise ValueError(f"expected blocks [n] or [{self.batch}, n], got shape {tuple(block.shape)}")
        return x.to(self._enc.device, self._enc.dtype), unbatched

    def _out(self, wav: torch.Tensor, unbatched: bool) -> torch.Tensor:
        return wav[0] if unbatched else wav

    def _run(self, x: torch.Tensor, final_tail: bool = False) -> torch.Tensor:
        model = self.model
        rep, self._enc = model.encoder.step(x, self._enc)
        if rep.shape[-1]:
            masks, self._mask = model.masker.step(rep, self._mask)
            wav, self._dec = model.decoder.step(model.apply_masks(rep, masks), self._dec)
        else:
            wav = self._dec[..., :0]
        if final_tail:
            wav = torch.cat([wav, self._dec], dim=-1)
        if self._drop:
            k = min(self._drop, wav.shape[-1])
            wav, self._drop = wav[..., k:], self._drop - k
        if not final_tail:
            self.emitted += wav.shape[-1]
        return wav
