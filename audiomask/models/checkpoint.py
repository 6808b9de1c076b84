"""Checkpoints: one safetensors file with the weights and, as metadata, the model name,
its config (JSON) and sample rate. Loading never unpickles anything, checks the config
against :mod:`audiomask.models.schema` before building the model, and refuses
mis-shaped or non-finite weights."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from audiomask.fileio import atomic_target
from audiomask.state_dicts import state_dict_problems
from audiomask.models.registry import get_model_class
from audiomask.models.schema import config_problems

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
    meta = safetensors_metadata(path)
    if meta is None:
        raise CheckpointError(f"{path}: not a safetensors checkpoint")
    if meta.get("format") != FORMAT or "model" not in meta or "config" not in meta:
        raise CheckpointError(f"{path}: safetensors file without audiomask metadata (model, config)")
    return meta


def safetensors_metadata(path: Path) -> dict[str, str] | None:
    """The metadata of a safetensors file (``{}`` when it has none), ``None`` when ``path`` is
    not a readable safetensors file."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception:  # safetensors raises SafetensorError, OSError, ValueError … on bad headers
        return None


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild the model saved at ``path`` (or the bundled pretrained model of that name).

    The config is validated (types, ranges, parameter count) before the model is built; a
    missing, unexpected, mis-shaped or non-finite tensor raises :class:`CheckpointError`."""
    path = resolve_model_path(path)
    meta = read_metadata(path)
    try:
        cls = get_model_class(meta["model"])
    except ValueError as e:
        raise CheckpointError(f"{path}: model: {e}") from None
    try:
        values = json.loads(meta["config"])
    except ValueError as e:
        raise CheckpointError(f"{path}: config: not valid JSON ({e})") from None
    model = build_checked(cls, values, str(path))
    if model.sample_rate != _int_or_none(meta.get("sample_rate", str(model.sample_rate))):
        raise CheckpointError(f"{path}: sample_rate: metadata says {meta.get('sample_rate')!r}, "
                              f"the config {model.sample_rate}")
    try:
        state = load_file(str(path), device="cpu")
    except Exception as e:  # a header that lies about offsets, a truncated file
        raise CheckpointError(f"{path}: cannot read the tensors ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    check_state_dict(model, state, source=str(path))
    model.load_state_dict(state)
    return model.to(device).eval()


def average_checkpoints(paths: list[str | os.PathLike]) -> torch.nn.Module:
    """The uniform average of the weights of several checkpoints of one model and config — a
    "model soup" (Wortsman et al., ICML 2022): fine-tunes of one starting point average into a
    model that often scores between or above them. Floating-point tensors (weights, BatchNorm
    running statistics) are averaged in float64; integer buffers (BatchNorm's batch counter)
    take their largest value. A checkpoint of another model or config raises
    :class:`CheckpointError` naming it."""
    if len(paths) < 2:
        raise CheckpointError(f"average_checkpoints needs two checkpoints or more, got {len(paths)}")
    models = [load_model(p) for p in paths]
    first = models[0]
    for path, model in zip(paths[1:], models[1:]):
        if model.name != first.name or model.config != first.config:
            raise CheckpointError(f"{path}: {model.name} {dataclasses.asdict(model.config)} cannot be averaged with "
                                  f"{paths[0]}: {first.name} {dataclasses.asdict(first.config)}")
    states = [m.state_dict() for m in models]
    average = {}
    for key, value in states[0].items():
        stacked = torch.stack([s[key] for s in states])
        average[key] = (stacked.double().mean(0).to(value.dtype) if value.is_floating_point()
                        else stacked.amax(0))
    first.load_state_dict(average)
    return first


def _int_or_none(text: str) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def build_checked(cls: type, values: dict[str, Any], source: str, preset: str | None = None) -> torch.nn.Module:
    """``cls(config)`` for config ``values`` (over ``preset``'s) read from ``source``, after
    checking every field and the parameter count (:func:`audiomask.models.schema.config_problems`):
    each problem is named, on one line, before anything is allocated."""
    if preset is not None:
        if preset not in cls.presets:
            raise CheckpointError(f"{source}: {cls.name} has no preset {preset!r}; choose one of {sorted(cls.presets)}")
        values = {**cls.presets[preset], **values}
    problems = config_problems(cls, values)
    if problems:
        raise CheckpointError(f"{source}: bad {cls.name} config: " + "; ".join(problems))
    try:
        return cls(cls.make_config(None, **values))
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{source}: bad {cls.name} config ({e})") from None


def check_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Raise :class:`CheckpointError` naming every missing, unexpected or mis-shaped tensor,
    or the first tensors holding NaN or infinite values."""
    problems = state_dict_problems({k: v.shape for k, v in model.state_dict().items()}, state)
    if problems:
        raise CheckpointError(f"{source}: state_dict does not fit {model.name}: " + "; ".join(problems))
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{source}: non-finite weights (NaN or Inf) in {bad[:3]}"
                              f"{' …' if len(bad) > 3 else ''} ({len(bad)} tensors)")


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
