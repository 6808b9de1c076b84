"""The one model shape of audiomask: encoder → masker → decoder."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Sequence

import torch
from torch import nn


class EncoderMaskerDecoder(nn.Module):
    """Base class of every separation model.

    ``forward(mix)`` = ``decode(apply_masks(rep, estimate_masks(rep)), length)`` with
    ``rep = encode(mix)``. Subclasses set :attr:`name`, :attr:`config_class` and
    :attr:`presets`, and build ``encoder``, ``masker`` and ``decoder`` from their typed
    config in ``__init__(config)``; ``type(model)(model.config)`` rebuilds the model exactly.

    Shapes: mixture ``[T]``, ``[batch, T]`` or ``[batch, 1, T]`` → estimates
    ``[n_src, T]`` / ``[batch, n_src, T]``, same length as the input.
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type] = object
    presets: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self, config: Any, encoder: nn.Module, masker: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.encoder = encoder
        self.masker = masker
        self.decoder = decoder

    # -- construction ---------------------------------------------------------------
    @classmethod
    def make_config(cls, preset: str | None = None, **overrides: Any) -> Any:
        """The typed config of ``preset`` (default: the config class defaults) with overrides."""
        values: dict[str, Any] = {}
        if preset is not None:
            if preset not in cls.presets:
                raise ValueError(
                    f"{cls.name}: unknown preset {preset!r}; choose one of {sorted(cls.presets)}"
                )
            values.update(cls.presets[preset])
        values.update(overrides)
        return config_from_dict(cls.config_class, values, context=cls.name)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "EncoderMaskerDecoder":
        """Build the named configuration, e.g. ``ConvTasNet.preset("paper")``."""
        return cls(cls.make_config(name, **overrides))

    # -- attributes -------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return int(self.config.sample_rate)

    @property
    def n_src(self) -> int:
        return int(self.config.n_src)

    @property
    def causal(self) -> bool:
        return bool(getattr(self.masker, "causal", False))

    @property
    def receptive_field(self) -> int | None:
        """Input samples that influence one output sample (through the masker's frames);
        ``None`` when every output sample depends on the whole input (a masker with global
        attention declares ``receptive_field = None``)."""
        frames = getattr(self.masker, "receptive_field", 1)
        if frames is None:
            return None
        return (int(frames) - 1) * self.encoder.hop + self.encoder.win

    @property
    def min_length(self) -> int:
        """Shortest input (samples) the model takes: one encoder window (an STFT's reflect
        padding needs more than ``n_fft / 2`` samples), or ``min_frames`` hops when the masker
        declares that it needs that many frames."""
        enc = self.encoder
        shortest = int(getattr(enc, "n_fft", None) or enc.win)
        return max(shortest, int(getattr(self.masker, "min_frames", 0)) * enc.hop)

    def n_params(self, trainable_only: bool = True) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    # -- the four steps ---------------------------------------------------------------
    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """``[batch, T]`` → representation ``[batch, ...]``."""
        return self.encoder(wav)

    def estimate_masks(self, rep: torch.Tensor) -> torch.Tensor:
        """Representation ``[batch, ...]`` → masks ``[batch, n_src, ...]``."""
        return self.masker(rep)

    def apply_masks(self, rep: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Multiply each mask with the representation (complex product for complex masks)."""
        return masks * rep.unsqueeze(1)

    def decode(self, masked: torch.Tensor, length: int) -> torch.Tensor:
        """``[batch, n_src, ...]`` → waveforms ``[batch, n_src, length]``."""
        return self.decoder(masked, length)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        wav, unbatched = as_batch(mix)
        rep = self.encode(wav)
        est = self.decode(self.apply_masks(rep, self.estimate_masks(rep)), wav.shape[-1])
        return est[0] if unbatched else est

    # -- streaming: the layers' init_state / step / flush, folded ----------------------------
    #: the signals a streaming step takes, one block of each (names for error messages)
    stream_inputs: ClassVar[tuple[str, ...]] = ("block",)

    def init_state(self, batch: int = 1, device: torch.device | None = None) -> "StreamState":
        """A fresh stream of ``batch`` signals: each layer's :meth:`init_state`. Needs a causal
        model whose encoder, masker and decoder all stream."""
        if not self.causal:
            raise ValueError(f"{self.name} is not causal: exact streaming needs a causal model "
                             "(use chunked inference for non-causal ones)")
        for part in (self.encoder, self.masker, self.decoder):
            if not hasattr(part, "step"):
                raise ValueError(f"{type(part).__name__} has no streaming step")
        return StreamState([self.encoder.init_state(batch, device) for _ in self.stream_inputs],
                           self.masker.init_state(batch, device),
                           self.decoder.init_state((batch, self.n_src), device))

    def step(self, blocks: Sequence[torch.Tensor], state: "StreamState") -> tuple[torch.Tensor, "StreamState"]:
        """The next blocks (one ``[B, n]`` per :attr:`stream_inputs`, equal lengths) through
        encoder, masker and decoder: the output samples that are final so far, ``[B, n_src,
        m]``. All outputs of a stream, with :meth:`flush`'s, equal the offline forward pass."""
        reps = []
        for i, wav in enumerate(blocks):
            rep, state.encoders[i] = self.encoder.step(wav, state.encoders[i])
            reps.append(rep)
        state.received += blocks[0].shape[-1]
        return self._decode_step(reps, state), state

    def flush(self, state: "StreamState") -> tuple[torch.Tensor, "StreamState"]:
        """The end of the stream, as the offline pass ends a signal: the encoder's right
        padding, the decoder's last samples; all outputs then have the input's length."""
        length, before = state.received, state.emitted
        reps = []
        for i in range(len(state.encoders)):
            rep, state.encoders[i] = self.encoder.flush(state.encoders[i], length)
            reps.append(rep)
        wav = self._decode_step(reps, state)
        rest, state.decoder = self.decoder.flush(state.decoder, length)
        wav = torch.cat([wav, self._stream_out(rest, state)], dim=-1)[..., : length - before]
        state.emitted = before + wav.shape[-1]
        return wav, state

    def _decode_step(self, reps: list[torch.Tensor], state: "StreamState") -> torch.Tensor:
        if reps[0].shape[-1] == 0:  # no new frame: the decoder gives no samples
            masked = reps[0].unsqueeze(1)
        else:
            masks, state.masker = self.masker.step(*reps, state.masker)
            masked = self._stream_masked(reps, masks, state)
        wav, state.decoder = self.decoder.step(masked, state.decoder)
        state.emitted += wav.shape[-1]
        return self._stream_out(wav, state)

    def _stream_masked(self, reps: list[torch.Tensor], masks: torch.Tensor, state: "StreamState") -> torch.Tensor:
        """What the decoder steps on: :meth:`apply_masks` of the first input's frames."""
        return self.apply_masks(reps[0], masks)

    def _stream_out(self, wav: torch.Tensor, state: "StreamState") -> torch.Tensor:
        """The decoder's samples as the stream gives them (here: as they are)."""
        return wav

    def stream(self, batch: int = 1, sample_rate: int | None = None, nonfinite: str = "error"):
        """An exact stateful stream through this (causal) model: ``process(block)``, ``flush()``.
        ``sample_rate``: the blocks' rate, refused unless it is the model's; ``nonfinite``:
        ``"error"`` refuses blocks with NaN/Inf, ``"zero"`` zeroes and counts those samples.
        See :class:`audiomask.streaming.StreamingSession`."""
        from audiomask.streaming import StreamingSession

        return StreamingSession(self.eval(), batch, sample_rate=sample_rate, nonfinite=nonfinite)

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: str, metadata: dict[str, str] | None = None) -> None:
        """Write weights + config to one safetensors file (see :mod:`audiomask.models.checkpoint`)."""
        from audiomask.models.checkpoint import save_model

        save_model(self, path, metadata)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, sample_rate={self.sample_rate}, n_src={self.n_src}"


@dataclasses.dataclass
class StreamState:
    """A model's stream state: each layer's own, and the samples in and out so far.

    Attributes:
        encoders: the encoder's state for each input signal (:attr:`~EncoderMaskerDecoder.stream_inputs`).
        masker: the masker's state.
        decoder: the decoder's state.
        received: input samples per signal so far.
        emitted: output samples per signal so far.
        options: model-specific choices fixed for the stream (e.g. an echo canceller's ``return_all``).
    """

    encoders: list
    masker: Any
    decoder: Any
    received: int = 0
    emitted: int = 0
    options: dict = dataclasses.field(default_factory=dict)


def as_batch(mix: torch.Tensor) -> tuple[torch.Tensor, bool]:
    if mix.dim() == 1:
        return mix.unsqueeze(0), True
    if mix.dim() == 2:
        return mix, False
    if mix.dim() == 3 and mix.shape[1] == 1:
        return mix[:, 0], False
    raise ValueError(
        f"expected a mono mixture [T], [batch, T] or [batch, 1, T], got shape {tuple(mix.shape)}"
    )


def config_from_dict(config_class: type, values: dict[str, Any], context: str = "") -> Any:
    """Build ``config_class(**values)``, naming unknown fields instead of a bare TypeError."""
    fields = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(
            f"{context or config_class.__name__}: unknown config field(s) {unknown}; "
            f"valid fields are {sorted(fields)}"
        )
    return config_class(**values)
