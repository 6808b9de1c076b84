"""Optional C kernels (``audiomask/_native.c``) for the streaming fast path, through ctypes.

Streaming a causal model processes a few frames per call, where the fixed cost of each
PyTorch op dominates; a cumulative layer norm step is about twenty small ops. The kernel does
it in one pass. It is built at install time when a C compiler is present (``setup.py``,
optional); :data:`ENABLED` is ``False`` without it, or with ``AUDIOMASK_NO_NATIVE=1``, and
callers then run the PyTorch ops. Results agree to float32 rounding.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os

import torch

_LIB = None
if os.environ.get("AUDIOMASK_NO_NATIVE") != "1":
    _spec = importlib.util.find_spec("audiomask._native")
    if _spec is not None and _spec.origin:
        try:
            _LIB = ctypes.CDLL(_spec.origin)
            _cln = _LIB.am_cln_step_f32
            _cln.argtypes = ([ctypes.c_void_p] * 5 + [ctypes.c_int64] * 3
                             + [ctypes.c_double, ctypes.c_int32, ctypes.c_float])
            _cln.restype = None
            _dw = _LIB.am_dwconv_f32
            _dw.argtypes = ([ctypes.c_void_p, ctypes.c_int64] + [ctypes.c_void_p] * 3
                            + [ctypes.c_int64] * 5)
            _dw.restype = None
        except (OSError, AttributeError):
            _LIB = None

#: whether the compiled kernels are used (tests switch it off to compare with the PyTorch ops)
ENABLED = _LIB is not None


def can_cln_step(x: torch.Tensor, state: torch.Tensor) -> bool:
    """Whether :func:`cln_step` applies: kernels built and enabled, float32 CPU frames-major
    ``x`` and float64 ``state``, both contiguous, and no gradient needed."""
    return (ENABLED and x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 3
            and state.dtype == torch.float64 and x.is_contiguous() and state.is_contiguous()
            and not (torch.is_grad_enabled() and x.requires_grad))


def cln_step(x: torch.Tensor, state: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
             eps: float, slope: float | None = None) -> torch.Tensor:
    """Cumulative layer norm of frames-major ``x [B, F, C]`` — of ``prelu(x, slope)`` when a
    ``slope`` is given —; updates ``state [B, 3]`` (Σx, Σx², values seen; float64) in place.
    Check :func:`can_cln_step` first; ``weight``/``bias`` ``[C]`` must be contiguous float32
    (parameters are)."""
    batch, frames, channels = x.shape
    out = torch.empty_like(x)
    _cln(x.data_ptr(), state.data_ptr(), weight.data_ptr(), bias.data_ptr(), out.data_ptr(),
         batch, frames, channels, float(eps), slope is not None, 0.0 if slope is None else float(slope))
    return out


def can_dwconv(y: torch.Tensor) -> bool:
    """Whether :func:`dwconv` applies to the history view ``y`` (float32 CPU, rows contiguous)."""
    return (ENABLED and y.device.type == "cpu" and y.dtype == torch.float32 and y.dim() == 3
            and y.stride(2) == 1 and y.stride(1) == y.shape[2]
            and not (torch.is_grad_enabled() and y.requires_grad))


def dwconv(y: torch.Tensor, taps: torch.Tensor, bias: torch.Tensor, dilation: int) -> torch.Tensor:
    """Causal dilated depthwise conv of the newest frames: ``y [B, (P-1)·d + F, H]`` (context
    then new frames), ``taps [P, H]`` and ``bias [H]`` contiguous → ``[B, F, H]``."""
    batch, total, hidden = y.shape
    n_taps = taps.shape[0]
    frames = total - (n_taps - 1) * dilation
    out = y.new_empty(batch, frames, hidden)
    _dw(y.data_ptr(), y.stride(0), taps.data_ptr(), bias.data_ptr(), out.data_ptr(),
        batch, frames, hidden, n_taps, dilation)
    return out
