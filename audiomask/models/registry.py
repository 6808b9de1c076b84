"""Model registry: names → model classes, and ``build``."""

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
    _import_all()
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


def list_models() -> dict[str, list[str]]:
    """``{model name: [preset names]}`` of every registered model."""
    _import_all()
    return {name: sorted(cls.presets) for name, cls in sorted(MODELS.items())}


def _import_all() -> None:
    # Importing the model modules runs their @register_model decorators.
    import audiomask.models.aec  # noqa: F401
    import audiomask.models.convtasnet  # noqa: F401
    import audiomask.models.mossformer  # noqa: F401
    import audiomask.models.tiger  # noqa: F401
