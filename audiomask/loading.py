"""``audiomask.load``: one entry point for every way of naming a trained model.

* a bundled model name (``convtasnet-mini2mix``) or an audiomask checkpoint file;
* a released checkpoint file or folder of another toolkit, as published
  (:mod:`audiomask.interop.formats`);
* ``hf:OWNER/REPO`` — a known release on the Hugging Face hub, fetched, converted and cached
  (:mod:`audiomask.hub`).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from audiomask.models.checkpoint import (
    FORMAT,
    CheckpointError,
    load_model,
    pretrained_models,
    resolve_model_path,
    safetensors_metadata,
)

HUB_PREFIX = "hf:"


def load(spec: str | os.PathLike, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The model named by ``spec`` (see the module docstring), in eval mode on ``device``."""
    return load_with_provenance(spec, device)[0]


def load_with_provenance(spec: str | os.PathLike, device: str | torch.device = "cpu"
                         ) -> tuple[torch.nn.Module, dict[str, str]]:
    """:func:`load` and where the weights came from: ``{"source_format", "origin", "license"?}``
    for a foreign release, the stored metadata (minus the config) for an audiomask file."""
    text = str(spec)
    if text.startswith(HUB_PREFIX):
        from audiomask.hub import fetch

        path = fetch(text[len(HUB_PREFIX):])
        return load_model(path, device), _native_provenance(path)
    path = Path(spec)
    if not path.exists() and text in pretrained_models():
        path = resolve_model_path(text)
    if is_native(path):
        return load_model(path, device), _native_provenance(path)
    if not path.exists():
        resolve_model_path(text)  # raises "checkpoint not found" with the bundled names
    from audiomask.interop.formats import read_release

    model, provenance = read_release(path)
    return model.to(device).eval(), provenance


def is_native(path: Path) -> bool:
    """Whether ``path`` is an audiomask checkpoint (safetensors with audiomask metadata)."""
    if not path.is_file():
        return False
    meta = safetensors_metadata(path)
    return meta is not None and meta.get("format") == FORMAT


def _native_provenance(path: Path) -> dict[str, str]:
    meta = dict(safetensors_metadata(path) or {})
    meta.pop("config", None)
    return meta


__all__ = ["load", "load_with_provenance", "is_native", "CheckpointError"]
