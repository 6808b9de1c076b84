"""Import weights from other toolkits and the authors' code.

One entry point: ``convert(source, state_dict, preset=None, **overrides) -> model``. The
configuration is inferred from tensor shapes where possible; ``preset`` and field
overrides settle what shapes cannot tell (sample rate, causality, blocks per repeat).
A state_dict with a missing, unexpected or mis-shaped tensor raises
:class:`~audiomask.models.checkpoint.CheckpointError` naming it.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch

from audiomask.interop.convtasnet import from_asteroid_convtasnet, from_naplab_convtasnet
from audiomask.interop.mossformer import from_clearervoice_mossformer2, from_modelscope_mossformer
from audiomask.interop.tiger import from_look2hear_tiger

Converter = Callable[..., torch.nn.Module]

CONVERTERS: dict[str, Converter] = {
    "asteroid-convtasnet": from_asteroid_convtasnet,
    "naplab-convtasnet": from_naplab_convtasnet,
    "modelscope-mossformer": from_modelscope_mossformer,
    "clearervoice-mossformer2": from_clearervoice_mossformer2,
    "look2hear-tiger": from_look2hear_tiger,
}


def convert(source: str, state_dict: Mapping[str, Any], preset: str | None = None,
            **overrides: Any) -> torch.nn.Module:
    """Build the audiomask model equivalent to ``state_dict`` from ``source``.

    Args:
        source: one of :data:`CONVERTERS` (``"asteroid-convtasnet"``, ``"naplab-convtasnet"``,
            ``"look2hear-tiger"``, ``"modelscope-mossformer"``, ``"clearervoice-mossformer2"``).
        state_dict: the foreign weights (a plain state_dict, or a package dict holding one
            under ``"state_dict"`` / ``"model"`` as Asteroid and Lightning write them).
        preset: audiomask preset to start from instead of the inferred configuration.
        overrides: config fields to force (e.g. ``sample_rate=16000``, ``causal=True``).
    """
    try:
        converter = CONVERTERS[source]
    except KeyError:
        raise ValueError(f"unknown source {source!r}; choose one of {sorted(CONVERTERS)}") from None
    return converter(state_dict, preset=preset, **overrides)


__all__ = ["convert", "CONVERTERS"]
