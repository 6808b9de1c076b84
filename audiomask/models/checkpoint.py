"""Checkpoints: one safetensors file with the weights and, as metadata, the model name,
its config (JSON) and sample rate. Loading never unpickles anything."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from audiomask.fileio import atomic_target
from audiomask.models.registry import get_model_class

FORMAT = "audiomask"
FORMAT_VERSION = "1"
PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "pretrained"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be loaded; the message names the file and the problem."""


def save_model(model: torch.nn.Module, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """Write ``model`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    from audiomask import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "audiomask_version": __version__,
        "model": model.name,
        "config": json.dumps(dataclasses.asdict(model.config), sort_keys=True),
        "sample_rate": str(model.sample_rate),
        **(metadata or {}),
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_target(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata of an audiomask checkpoint, checked for the required fields."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a safetensors checkpoint ({e})") from None
    if meta.get("format") != FORMAT or "model" not in meta or "config" not in meta:
        raise CheckpointError(f"{path}: safetensors file without audiomask metadata (model, config)")
    return meta


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild the model saved at ``path`` (or the bundled pretrained model of that name)."""
    path = resolve_model_path(path)
    meta = read_metadata(path)
    cls = get_model_class(meta["model"])
    try:
        config = cls.make_config(None, **json.loads(meta["config"]))
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: bad config ({e})") from None
    model = cls(config)
    state = load_file(str(path), device=str(device))
    check_state_dict(model, state, source=str(path))
    model.load_state_dict(state)
    return model.to(device).eval()


def check_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Raise :class:`CheckpointError` naming every missing, unexpected or mis-shaped tensor."""
    problems = state_dict_problems({k: v.shape for k, v in model.state_dict().items()}, state)
    if problems:
        raise CheckpointError(f"{source}: state_dict does not fit {model.name}: " + "; ".join(problems))


def state_dict_problems(expected: Mapping[str, Sequence[int]], state: Mapping[str, torch.Tensor]) -> list[str]:
    """What is wrong with ``state`` against ``expected`` (name → shape): the missing and the
    unexpected names (the first five of each, and how many) and every mis-shaped tensor.
    Empty when ``state`` fits. Converters call it with the foreign toolkit's names."""
    problems: list[str] = []
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    if missing:
        problems.append(f"missing {missing[:5]}{' …' if len(missing) > 5 else ''} ({len(missing)})")
    if extra:
        problems.append(f"unexpected {extra[:5]}{' …' if len(extra) > 5 else ''} ({len(extra)})")
    for k, shape in expected.items():
        if k in state and tuple(state[k].shape) != tuple(shape):
            problems.append(f"{k} has shape {tuple(state[k].shape)}, expected {tuple(shape)}")
    return problems


def pretrained_models() -> dict[str, Path]:
    """Bundled pretrained checkpoints: ``{name: path}``."""
    if not PRETRAINED_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(PRETRAINED_DIR.glob("*.safetensors"))}


def resolve_model_path(name_or_path: str | os.PathLike) -> Path:
    """A file path as given, or the bundled pretrained checkpoint called ``name_or_path``."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    bundled = pretrained_models()
    if str(name_or_path) in bundled:
        return bundled[str(name_or_path)]
    hint = f"; bundled models: {', '.join(bundled)}" if bundled else ""
    raise CheckpointError(f"{name_or_path}: checkpoint not found{hint}")


def describe(model: torch.nn.Module) -> dict[str, Any]:
    """Summary used by ``audiomask info``."""
    return {
        "model": model.name,
        "sample_rate": model.sample_rate,
        "n_src": model.n_src,
        "causal": model.causal,
        "parameters": model.n_params(),
        "receptive_field_samples": model.receptive_field,
        "config": dataclasses.asdict(model.config),
    }
