"""Model registry: names → model classes, ``build``, and one-line descriptions.

The model modules register themselves (``@register_model``) when ``audiomask.models`` is
imported, which Python does before it imports this module; the registry imports none of them."""

from __future__ import annotations

from typing import Any

from torch import nn

MODELS: dict[str, type] = {}


def register_model(cls: type) -> type:
    """Class decorator: make ``cls`` buildable as ``build(cls.name)`` and loadable from files."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no registry name")
    MODELS[cls.name] = cls
    return cls


def get_model_class(name: str) -> type:
    try:
        return MODELS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}") from None


def build(name: str, preset: str | None = None, **overrides: Any) -> nn.Module:
    """Build model ``name`` (see :func:`list_models`) from ``preset`` with field overrides.

    >>> model = build("convtasnet", preset="paper", n_src=3)
    """
    cls = get_model_class(name)
    return cls(cls.make_config(preset, **overrides))


#: One line per architecture for ``audiomask list``.
DESCRIPTIONS = {
    "convtasnet": "Conv-TasNet: learned filterbank + dilated TCN masker; small and fast, causal presets "
                  "stream in real time",
    "mossformer": "MossFormer: gated attention with convolutions, 42 M parameters at paper size; offline, "
                  "best on clean 8 kHz speech",
    "mossformer2": "MossFormer2: MossFormer plus a recurrent FSMN block per layer (55.7 M); ClearerVoice's "
                   "released 16 kHz separator",
    "tiger": "TIGER: band-split time-frequency separator, 0.8 M parameters, for noisy reverberant speech",
    "d3net-aec": "complex D3Net: echo cancellation and noise suppression from microphone + far-end signals",
}


def describe_model(name: str) -> str:
    """One line saying what model ``name`` is for (:data:`DESCRIPTIONS`, else its docstring's
    first sentence)."""
    if name in DESCRIPTIONS:
        return DESCRIPTIONS[name]
    doc = (get_model_class(name).__doc__ or "").strip()
    return " ".join(doc.split("\n\n")[0].split()).split(". ")[0].rstrip(".")


def describe_preset(name: str, preset: str) -> str:
    """One line for preset ``preset`` of model ``name``: sample rate, causality and the fields it
    sets (the paper's configuration when it sets none)."""
    cls = get_model_class(name)
    config = cls.make_config(preset)
    sizes = {k: v for k, v in cls.presets[preset].items() if k not in ("sample_rate", "causal", "norm")}
    parts = [f"{config.sample_rate / 1000:g} kHz"]
    if hasattr(config, "causal"):
        parts.append("causal" if config.causal else "offline")
    parts.append(", ".join(f"{k}={v}" for k, v in sizes.items()) if sizes else "the paper's configuration"
                 if preset.startswith("paper") else "defaults")
    return "; ".join(parts)


def list_models() -> dict[str, list[str]]:
    """``{model name: [preset names]}`` of every registered model."""
    return {name: sorted(cls.presets) for name, cls in sorted(MODELS.items())}

