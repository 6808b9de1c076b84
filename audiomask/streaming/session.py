"""Exact stateful streaming of any causal model, block by block.

The streaming protocol is per layer: every layer that looks back has ``init_state``,
``step(x, state) -> (y, state)`` and, where the offline pass treats the end of a signal
specially, ``flush(state, length)`` — the conv encoder keeps its not-yet-framed samples, the
STFT its buffer, cumulative layer norms their running sums, each causal conv its last inputs,
the decoders their overlap-add tails. A model folds its layers' protocol into its own
(:meth:`~audiomask.models.base.EncoderMaskerDecoder.init_state` / ``step`` / ``flush``: one input
for a separator, two for an echo canceller), and :class:`StreamingSession` folds the model's
over a stream of blocks, doing only what every stream needs: taking blocks as they come
(:mod:`.blocks`), refusing bad ones before any state changes, and shaping the outputs. A block
of ``n`` samples costs work proportional to ``n``; the concatenated outputs equal the offline
forward pass over the whole signal to float32 precision.
"""

from __future__ import annotations

from typing import Any

import torch

from audiomask.streaming.blocks import as_float_block, check_nonfinite_policy, check_sample_rate, finite_block


class StreamingSession:
    """A stream through a causal model: ``process(*blocks)`` any number of times, then ``flush()``.

    ``process`` takes one block per input of the model (:attr:`model.stream_inputs
    <audiomask.models.base.EncoderMaskerDecoder.stream_inputs>`: a separator's mixture; an echo
    canceller's microphone and far-end signals), each ``[n]`` or ``[batch, n]``, all of the
    same shape, ``n`` free to change from call to call (0 allowed): torch tensors or numpy
    arrays, float samples or integer PCM (int16, int32, …: scaled to [-1, 1)), at the model's
    rate (give ``sample_rate`` to have that checked: a stream is not resampled). It returns
    the samples that are final so far — a separator's ``[n_src, m]`` (or ``[batch, n_src,
    m]``), an echo canceller's near-end ``[m]`` (``[batch, m]``; with ``return_all``, ``[3, m]``:
    near-end, echo, noise) —; ``flush`` returns the rest (also when nothing was processed), so
    that all outputs together have the input's length and equal the offline pass.

    Blocks with NaN/Inf samples are refused with a ``ValueError`` before any state changes, so
    the stream goes on as if they had not been sent (``nonfinite="error"``); with
    ``nonfinite="zero"`` those samples are taken as 0 and counted in ``nonfinite_samples``.
    ``options`` go to the model's ``init_state`` (e.g. ``return_all``).

    Latency: an input sample leaves at most the encoder window (``latency_samples``) later,
    plus the wait for the block that completes its frame.
    """

    def __init__(self, model: torch.nn.Module, batch: int = 1, sample_rate: int | None = None,
                 nonfinite: str = "error", **options: Any) -> None:
        check_sample_rate(sample_rate, model)
        self.nonfinite = check_nonfinite_policy(nonfinite)
        self.model, self.batch = model, batch
        param = next(model.parameters())
        self._device, self._dtype = param.device, param.dtype
        self.state = model.init_state(batch, self._device, **options)
        self.nonfinite_samples = 0
        self.finished = False
        self._unbatched = batch == 1  # flush() before any block: shaped as for [n] blocks

    @property
    def received(self) -> int:
        """Input samples (per signal) so far."""
        return self.state.received

    @property
    def latency_samples(self) -> int:
        """Algorithmic latency: the encoder window (samples)."""
        return self.model.encoder.win

    @torch.inference_mode()
    def process(self, *blocks: torch.Tensor) -> torch.Tensor:
        if self.finished:
            raise RuntimeError("this stream was flushed; start a new one with model.stream()")
        names = self.model.stream_inputs
        if len(blocks) != len(names):
            raise TypeError(f"{self.model.name} streams {len(names)} signal(s) per call ({', '.join(names)}), "
                            f"got {len(blocks)}")
        xs, unbatched = self._as_batch(blocks, names)
        checked = [finite_block(x, self.nonfinite, name) for x, name in zip(xs, names)]  # refused: nothing changed
        self.nonfinite_samples += sum(zeroed for _, zeroed in checked)
        self._unbatched = unbatched
        out, self.state = self.model.step([x for x, _ in checked], self.state)
        return out[0] if unbatched else out

    @torch.inference_mode()
    def flush(self) -> torch.Tensor:
        """Finish the stream as the offline pass ends a signal (its right padding)."""
        if self.finished:
            raise RuntimeError("this stream was already flushed")
        self.finished = True
        out, self.state = self.model.flush(self.state)
        return out[0] if self.batch == 1 and self._unbatched else out

    def _as_batch(self, blocks: tuple, names: tuple[str, ...]) -> tuple[list[torch.Tensor], bool]:
        xs = [as_float_block(block, name) for block, name in zip(blocks, names)]
        if any(x.shape != xs[0].shape for x in xs):
            shapes = " and ".join(str(tuple(x.shape)) for x in xs)
            raise ValueError(f"the blocks ({', '.join(names)}) must have the same shape, got {shapes}")
        unbatched = xs[0].dim() == 1
        if unbatched:
            xs = [x.unsqueeze(0) for x in xs]
        if xs[0].dim() != 2 or xs[0].shape[0] != self.batch:
            shape = tuple(blocks[0].shape)
            raise ValueError(f"expected blocks [n] or [{self.batch}, n], got shape {shape}")
        return [x.to(self._device, self._dtype) for x in xs], unbatched
