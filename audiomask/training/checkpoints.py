"""Training state files: written atomically with a checksum, verified on resume.

``state.pt`` holds everything a run needs to continue (see :mod:`audiomask.training.trainer`)
plus ``sha256``, a digest of its content (every key, value, tensor dtype, shape and byte), so
a file damaged after it was written is detected even where the zip container's own checks
pass. Writing a new ``state.pt`` first renames the current one to ``state.prev.pt``: a run
whose newest state is damaged or missing resumes from the one before, with a warning.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Callable

import torch

from audiomask.fileio import atomic_target

STATE = "state.pt"
PREVIOUS = "state.prev.pt"


class TrainingError(ValueError):
    """A one-line problem with a training run (its config, device, files or numbers)."""


def state_digest(state: Any) -> str:
    """SHA-256 of ``state``'s content: the same before :func:`torch.save` and after
    :func:`torch.load`, whatever the container's layout or the tensors' devices and strides."""
    h = hashlib.sha256()

    def feed(obj: Any) -> None:
        h.update(type(obj).__name__.encode() + b"\0")
        if isinstance(obj, torch.Tensor):
            t = obj.detach().cpu().contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}\0".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(obj, dict):
            h.update(f"{len(obj)}\0".encode())
            for key, value in obj.items():
                feed(key)
                feed(value)
        elif isinstance(obj, (list, tuple)):
            h.update(f"{len(obj)}\0".encode())
            for value in obj:
                feed(value)
        else:  # str, int, float (repr round-trips), bool, None
            h.update(repr(obj).encode() + b"\0")

    feed(state)
    return h.hexdigest()


def write_state(state: dict[str, Any], out: Path) -> Path:
    """Save ``state`` with its digest as ``out/state.pt`` atomically, keeping the previous
    one as ``state.prev.pt``."""
    path = out / STATE
    with atomic_target(path) as tmp:
        torch.save({**state, "sha256": state_digest(state)}, tmp)
        if path.is_file():
            os.replace(path, out / PREVIOUS)
    return path


def _problem(state: Any) -> str | None:
    """Why a loaded state cannot be resumed from, or None."""
    if not isinstance(state, dict) or "step" not in state or "model" not in state:
        return "not an audiomask training state"
    digest = state.get("sha256")
    if digest is not None and digest != state_digest({k: v for k, v in state.items() if k != "sha256"}):
        return "checksum mismatch (the file was damaged after it was written)"
    tensors = list(state["model"].values())
    for per_param in state.get("optimizer", {}).get("state", {}).values():
        tensors += [v for v in per_param.values() if isinstance(v, torch.Tensor)]
    if any(t.is_floating_point() and not torch.isfinite(t).all() for t in tensors):
        return "non-finite weights or optimizer state"
    return None


def read_state(out: Path, warn: Callable[[str], None], tidy: bool = True) -> dict[str, Any] | None:
    """The newest valid state in ``out`` (None when there is none to resume from).

    When ``state.pt`` is damaged, unreadable or missing the run resumes from ``state.prev.pt``
    with a warning (and, with ``tidy``, the damaged file is renamed ``state.pt.corrupt`` so the
    next save keeps the good one); when no state file is valid, :class:`TrainingError` says
    why for each."""
    found = [out / name for name in (STATE, PREVIOUS) if (out / name).is_file()]
    problems = []
    for path in found:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 — a damaged zip/pickle fails in many ways; all mean "unreadable"
            detail = (str(e).splitlines() or ["no detail"])[0][:120]
            problem: str | None = f"unreadable, truncated or not a torch file ({type(e).__name__}: {detail})"
        else:
            problem = _problem(state)
        if problem is None:
            if path.name != STATE:
                reason = problems[0] if problems else f"{out / STATE}: missing"
                warn(f"{reason}; resuming from the previous checkpoint {path} (step {state['step']})")
                if tidy and (out / STATE).is_file():
                    os.replace(out / STATE, out / (STATE + ".corrupt"))
            return state
        problems.append(f"{path}: {problem}")
    if problems:
        raise TrainingError("; ".join(problems) + f"; no valid checkpoint to resume from: move {out} away "
                            "(or set another run.out_dir) to start afresh")
    return None
