"""Bounds on model configs read from files, checked before anything is allocated.

A checkpoint's config is data from outside: :func:`config_problems` checks every field's type
(``bool`` is not an ``int``; a float or a string where an integer belongs is refused), its range
or set of choices, and the parameter count the config implies, computed on the ``meta`` device
(no memory) with the repeated stages built once or twice and extrapolated — so a config asking
for a million blocks is refused in milliseconds instead of allocating gigabytes.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

import torch
from torch.utils._device import DeviceContext

from audiomask.filterbanks import FRAMINGS
from audiomask.maskers.tcn import MASK_ACTIVATIONS as TCN_MASK_ACTIVATIONS
from audiomask.nn.complex import MASK_ACTIVATIONS as COMPLEX_MASK_ACTIVATIONS
from audiomask.nn.complex import NORMS as COMPLEX_NORMS
from audiomask.nn.norms import NORMS

#: Largest model a config may describe (the biggest released model here, MossFormer2, has 55.7 M).
MAX_PARAMS = 200_000_000

_CHANNELS = (1, 8192)
_SAMPLE_RATE = (1000, 384_000)
_N_SRC = (1, 16)

#: Per model: field → (low, high) inclusive for numbers, or a tuple of allowed values.
LIMITS: dict[str, dict[str, Any]] = {
    "convtasnet": {
        "n_src": _N_SRC, "sample_rate": _SAMPLE_RATE, "n_filters": _CHANNELS, "kernel_size": (1, 4096),
        "stride": (1, 4096), "bn_chan": _CHANNELS, "hid_chan": _CHANNELS, "skip_chan": (0, 8192),
        "conv_kernel_size": (1, 64), "n_blocks": (1, 16), "n_repeats": (1, 64), "norm": tuple(NORMS),
        "mask_act": tuple(TCN_MASK_ACTIVATIONS), "framing": tuple(FRAMINGS), "encoder_activation": (None, "relu"),
    },
    "mossformer": {
        "n_src": _N_SRC, "sample_rate": _SAMPLE_RATE, "n_filters": _CHANNELS, "kernel_size": (1, 4096),
        "stride": (1, 4096), "d_model": _CHANNELS, "n_layers": (1, 256), "group_size": (1, 65536),
        "qk_dim": _CHANNELS, "expansion": (1, 16), "rotary_dim": (2, 8192), "conv_kernel_size": (1, 255),
        "dropout": (0.0, 1.0), "norm": tuple(NORMS),
    },
    "tiger": {
        "n_src": _N_SRC, "sample_rate": _SAMPLE_RATE, "win": (2, 65536), "hop": (1, 65536),
        "feature_dim": (1, 4096), "hidden_dim": (1, 4096), "depth": (1, 12), "n_iter": (1, 256),
        "n_heads": (1, 64), "qk_dim": (1, 1024), "dropout": (0.0, 1.0),
    },
    "d3net-aec": {
        "sample_rate": _SAMPLE_RATE, "n_src": (1, 1), "win": (2, 65536), "hop": (1, 65536),
        "window": ("hann", "sqrt_hann"), "pad_mode": ("constant", "reflect"), "compress": (1e-6, 1.0),
        "chan": (1, 1024), "growth": (1, 1024), "n_layers": (1, 12), "n_d2": (1, 12), "n_blocks": (1, 256),
        "kernel_freq": (1, 31), "kernel_time": (1, 31), "norm": COMPLEX_NORMS, "mask_act": COMPLEX_MASK_ACTIVATIONS,
    },
}
LIMITS["mossformer2"] = {**LIMITS["mossformer"], "fsmn_channels": _CHANNELS, "fsmn_lorder": (1, 1024),
                         "fsmn_depth": (1, 12)}

#: Per model: the one field whose every unit adds the same parameters (the repeated stage); the
#: count is measured with it at 1 and 2 and extrapolated.
REPEATED = {"convtasnet": "n_repeats", "mossformer": "n_layers", "mossformer2": "n_layers",
            "tiger": "n_iter", "d3net-aec": "n_blocks"}


def config_problems(cls: type, values: dict[str, Any]) -> list[str]:
    """Every way ``values`` (a config dict from a file) is not a valid config of model ``cls``:
    ``"field: problem"`` strings, empty when it is fine. The parameter count is checked only
    when each field is fine."""
    problems: list[str] = []
    if not isinstance(values, dict):
        return [f"config: expected a JSON object, got {type(values).__name__}"]
    fields = {f.name: f for f in dataclasses.fields(cls.config_class)}
    hints = typing.get_type_hints(cls.config_class)
    limits = LIMITS.get(cls.name, {})
    for key in values:
        if key not in fields:
            problems.append(f"{key}: unknown config field of {cls.name}")
    for key, value in values.items():
        if key in fields:
            problem = _field_problem(value, hints[key], limits.get(key))
            if problem:
                problems.append(f"{key}: {problem}")
    if problems:
        return problems
    try:
        config = cls.make_config(None, **values)
    except (ValueError, TypeError) as e:
        return [f"config: {e}"]
    n = estimated_params(cls, config)
    if n > MAX_PARAMS:
        problems.append(f"parameters: the config describes {n:,}, above the limit of {MAX_PARAMS:,}")
    return problems


def _field_problem(value: Any, hint: Any, limit: Any) -> str | None:
    allowed = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if value is None:
        return None if type(None) in allowed else "must not be null"
    kind = next((t for t in allowed if t is not type(None)), object)
    if kind is bool and not isinstance(value, bool):
        return f"expected true or false, got {value!r}"
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        return f"expected an integer, got {type(value).__name__} {value!r}"
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"expected a number, got {type(value).__name__} {value!r}"
        if not math.isfinite(value):
            return f"expected a finite number, got {value!r}"
    if kind is str and not isinstance(value, str):
        return f"expected a string, got {type(value).__name__} {value!r}"
    if isinstance(limit, tuple) and len(limit) == 2 and all(isinstance(b, (int, float)) and not isinstance(b, bool)
                                                            for b in limit) and kind in (int, float):
        low, high = limit
        if not low <= value <= high:
            return f"{value!r} is out of range [{low}, {high}]"
    elif isinstance(limit, tuple) and value not in limit:
        return f"{value!r} is not one of {', '.join(map(repr, limit))}"
    return None


def estimated_params(cls: type, config: Any) -> int:
    """Parameters of ``cls(config)``, counted without allocating: the model is built on the
    ``meta`` device with its repeated stage (:data:`REPEATED`) at 1 and 2 units and the count
    extrapolated linearly (exact: every unit has the same parameters)."""
    field = REPEATED.get(cls.name)
    if field is None:
        return _meta_count(cls, config)
    units = getattr(config, field)
    one = _meta_count(cls, dataclasses.replace(config, **{field: 1}))
    if units == 1:
        return one
    two = _meta_count(cls, dataclasses.replace(config, **{field: 2}))
    return one + (units - 1) * (two - one)


class _MetaDevice(DeviceContext):
    """``torch.device("meta")`` for every tensor factory except ``torch.tensor`` (a scalar
    read back with ``float()`` in a constructor must stay real)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in (torch.tensor, torch.as_tensor):
            return func(*args, **(kwargs or {}))
        return super().__torch_function__(func, types, args, kwargs)


def _meta_count(cls: type, config: Any) -> int:
    with _MetaDevice(torch.device("meta")):
        model = cls(config)
    return sum(p.numel() for p in model.parameters())
