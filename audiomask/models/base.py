"""The one model shape of audiomask: encoder → masker → decoder."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

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

    # -- streaming ----------------------------------------------------------------------
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
