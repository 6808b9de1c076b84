"""Optional C kernels (``audiomask/native/*.c``, built as ``audiomask.native._lib``), through ctypes.

- Streaming a causal model processes a few frames per call, where the fixed cost of each
  PyTorch op dominates: a cumulative layer norm step (:func:`cln_step`), a causal depthwise
  conv (:func:`dwconv`), and every block of a causal cLN TCN in one call (:func:`tcn_stream`).
- The gLN TCN's CPU inference and training paths (:mod:`~audiomask.maskers.tcn.cpu_inference`,
  :mod:`~audiomask.maskers.tcn.cpu_training`) run their norm/PReLU/depthwise passes and the backward
  passes here, on PyTorch's OpenMP threads.

The extension is built at install time when a C compiler is present (``setup.py``, optional);
:data:`BUILT` says whether it loaded; :func:`enabled` whether it is used — built, and the
acceleration mode (:mod:`audiomask.accel`, ``AUDIOMASK_KERNELS``) not ``reference``; callers
otherwise run the PyTorch ops. Results agree to float32 rounding.
"""

from __future__ import annotations

import ctypes
import importlib.util
import math

import torch

from audiomask import accel

_LIB = None
_spec = importlib.util.find_spec("audiomask.native._lib")
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
        _stats = _LIB.am_prelu_stats_f32
        _stats.argtypes = ([ctypes.c_void_p] + [ctypes.c_int64] * 3 + [ctypes.c_float, ctypes.c_int32,
                                                                      ctypes.c_void_p])
        _stats.restype = ctypes.c_int
        _ndw = _LIB.am_norm_dwconv_prelu_f32
        _ndw.argtypes = ([ctypes.c_void_p] + [ctypes.c_int64] * 3 + [ctypes.c_float]
                         + [ctypes.c_void_p] * 4 + [ctypes.c_int64] * 3
                         + [ctypes.c_float, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                            ctypes.c_int32, ctypes.c_void_p])
        _ndw.restype = ctypes.c_int
        _P, _I, _F, _T = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float, ctypes.c_int32
        _bsums = _LIB.am_gln_bwd_sums_f32
        _bsums.argtypes = [_P, _P, _I, _I, _F, _F, _F, _T, _P]
        _bdw = _LIB.am_dwconv_bwd_f32
        _bdw.argtypes = [_P, _P, _P, _I, _I, _F, _P, _P, _P, _I, _I, _I, _F, _P, _F, _F, _F, _F, _P, _T, _P]
        _bdwin = _LIB.am_dwconv_bwd_input_f32
        _bdwin.argtypes = [_P, _P, _I, _I, _F, _F, _F, _P, _I, _I, _I, _P, _T, _P]
        _bgln = _LIB.am_gln_prelu_bwd_f32
        _bgln.argtypes = [_P, _P, _I, _I, _F, _P, _F, _F, _F, _F, _P, _T, _P]
        for _f in (_bsums, _bdw, _bdwin, _bgln):
            _f.restype = ctypes.c_int
        _tcn = _LIB.am_tcn_stream_f32
        _tcn.argtypes = [_P, _I, _P, _I, _I, _I, _I, _I, ctypes.c_double, _P, _P, _T]
        _tcn.restype = ctypes.c_int
        _posix = _LIB.am_team_posix_threads
        _posix.argtypes = [_T]
        _posix.restype = None
    except (OSError, AttributeError):
        _LIB = None

#: whether the compiled kernels loaded
BUILT = _LIB is not None


def enabled() -> bool:
    """Whether the compiled kernels are used: :data:`BUILT` and not in ``reference`` mode."""
    return BUILT and accel.accelerated()


def can_cln_step(x: torch.Tensor, state: torch.Tensor) -> bool:
    """Whether :func:`cln_step` applies: kernels built and enabled, float32 CPU frames-major
    ``x`` and float64 ``state``, both contiguous, and no gradient needed."""
    return (enabled() and x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 3
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
    return (enabled() and y.device.type == "cpu" and y.dtype == torch.float32 and y.dim() == 3
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


# -- offline inference of a non-causal (gLN) TCN: frames-major rows [T, H] ------------------
def can_rows(x: torch.Tensor) -> bool:
    """Whether the row kernels below apply to ``x [T, H]``: kernels built and enabled, float32
    on the CPU, unit channel stride, no gradient needed."""
    return (enabled() and x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 2
            and x.stride(1) == 1 and not (torch.is_grad_enabled() and x.requires_grad))


def prelu_stats(x: torch.Tensor, slope: float = 1.0) -> tuple[float, float]:
    """``(Σ prelu(x), Σ prelu(x)²)`` over all of ``x [T, H]`` (rows may be strided; float64
    sums), on ``torch.get_num_threads()`` threads. ``slope`` 1 = no PReLU."""
    sums = (ctypes.c_double * 2)()
    _checked(_stats(x.data_ptr(), x.stride(0), x.shape[0], x.shape[1], float(slope),
                    torch.get_num_threads(), sums))
    return sums[0], sums[1]


def moments(parts, count: int, eps: float) -> tuple[float, float]:
    """gLN's statistics from :func:`prelu_stats`'s sums: the mean and ``1/sqrt(var + eps)``
    (biased variance) of ``count`` values whose ``(Σx, Σx²)`` come in ``parts`` (an iterable of
    pairs, e.g. one per span of rows)."""
    total = total_sq = 0.0
    for s, q in parts:
        total, total_sq = total + s, total_sq + q
    mean = total / count
    return mean, 1.0 / math.sqrt(max(total_sq / count - mean * mean, 0.0) + eps)


def norm_dwconv_prelu(x: torch.Tensor, slope: float, scale: torch.Tensor, shift: torch.Tensor,
                      taps: torch.Tensor, bias: torch.Tensor, dilation: int, pad: int,
                      out_slope: float, out: torch.Tensor | None,
                      pre: torch.Tensor | None = None, rows: tuple[int, int] | None = None) -> tuple[float, float]:
    """The middle of a TCN block over whole rows ``x [T, H]`` in one pass::

        n = prelu(x, slope) * scale + shift            (the first norm, as a per-channel affine)
        out[t] = prelu(bias + Σ_k taps[k] * n[t + k·dilation − pad], out_slope)

    with ``n`` zero outside ``[0, T)``, for the rows ``t`` in ``rows = (r0, r1)`` (all by
    default): ``out [r1 − r0, H]`` contiguous (and ``pre``, the values before the PReLU);
    ``out=None`` makes only the sums. ``scale``/``shift``/``bias`` ``[H]`` and ``taps [P, H]``
    contiguous float32. Returns ``(Σ out, Σ out²)`` (float64) over those rows, for the next
    norm."""
    r0, r1 = rows if rows is not None else (0, x.shape[0])
    sums = (ctypes.c_double * 2)()
    _checked(_ndw(x.data_ptr(), x.stride(0), x.shape[0], x.shape[1], float(slope), scale.data_ptr(),
         shift.data_ptr(), taps.data_ptr(), bias.data_ptr(), taps.shape[0], dilation, pad,
         float(out_slope), None if out is None else out.data_ptr(), None if pre is None else pre.data_ptr(), r0, r1,
         torch.get_num_threads(), sums))
    return sums[0], sums[1]


# -- backward of the middle of a gLN TCN block (see passes.c; one example, rows [T, H]) -----
def _checked(status: int) -> None:
    if status != 0:
        raise MemoryError("audiomask.native: could not allocate the kernel's accumulators")


def gln_bwd_sums(dm: torch.Tensor, v: torch.Tensor, a2: float, mu: float, r: float) -> torch.Tensor:
    """``[2, H]`` float64: ``Σ_t dm`` and ``Σ_t dm · m̂`` with ``m̂ = (prelu(v, a2) − mu) · r``."""
    acc = torch.empty(2, dm.shape[1], dtype=torch.float64)
    _checked(_bsums(dm.data_ptr(), v.data_ptr(), dm.shape[0], dm.shape[1], a2, mu, r,
                    torch.get_num_threads(), acc.data_ptr()))
    return acc


def dwconv_bwd(dm: torch.Tensor, v: torch.Tensor, h: torch.Tensor, a1: float, scale: torch.Tensor,
               shift: torch.Tensor, taps: torch.Tensor, dilation: int, pad: int, a2: float,
               gamma: torch.Tensor, mu: float, r: float, c_a: float, c_b: float,
               dv: torch.Tensor) -> torch.Tensor:
    """Writes ``dv``; returns ``[P + 2, H]`` float64: taps gradient, conv-bias gradient, and the
    per-channel terms of the second PReLU's slope gradient."""
    frames, hidden = dm.shape
    acc = torch.empty(taps.shape[0] + 2, hidden, dtype=torch.float64)
    _checked(_bdw(dm.data_ptr(), v.data_ptr(), h.data_ptr(), frames, hidden, a1, scale.data_ptr(),
                  shift.data_ptr(), taps.data_ptr(), taps.shape[0], dilation, pad, a2, gamma.data_ptr(),
                  mu, r, c_a, c_b, dv.data_ptr(), torch.get_num_threads(), acc.data_ptr()))
    return acc


def dwconv_bwd_input(dv: torch.Tensor, h: torch.Tensor, a1: float, mu: float, r: float,
                     taps: torch.Tensor, dilation: int, pad: int, dn: torch.Tensor) -> torch.Tensor:
    """Writes ``dn`` (the transposed depthwise conv of ``dv``); returns ``[2, H]`` float64:
    ``Σ_t dn`` and ``Σ_t dn · n̂`` with ``n̂ = (prelu(h, a1) − mu) · r``."""
    acc = torch.empty(2, dv.shape[1], dtype=torch.float64)
    _checked(_bdwin(dv.data_ptr(), h.data_ptr(), dv.shape[0], dv.shape[1], a1, mu, r, taps.data_ptr(),
                    taps.shape[0], dilation, pad, dn.data_ptr(), torch.get_num_threads(), acc.data_ptr()))
    return acc


def gln_prelu_bwd(dn: torch.Tensor, h: torch.Tensor, a1: float, gamma: torch.Tensor, mu: float, r: float,
                  c_a: float, c_b: float, dh: torch.Tensor) -> torch.Tensor:
    """Writes ``dh`` (may be ``dn``); returns ``[2, H]`` float64: ``Σ_t dh`` and the per-channel
    terms of the first PReLU's slope gradient."""
    acc = torch.empty(2, dn.shape[1], dtype=torch.float64)
    _checked(_bgln(dn.data_ptr(), h.data_ptr(), dn.shape[0], dn.shape[1], a1, gamma.data_ptr(), mu, r,
                   c_a, c_b, dh.data_ptr(), torch.get_num_threads(), acc.data_ptr()))
    return acc


# -- streaming: every block of a causal (cLN) TCN in one call --------------------------------
class TCNStreamBlock(ctypes.Structure):
    """One block of :func:`tcn_stream` (``am_tcn_block`` in ``tcn_stream.c``): pointers to
    its weights (1×1 weights transposed, k-major), its history buffer and its two norms' running
    sums, and the history's capacity/end/context in frames."""

    _fields_ = ([(name, ctypes.c_void_p) for name in ("w_in", "b_in", "n1w", "n1b", "taps", "dw_b", "n2w",
                                                       "n2b", "w_out", "buffer", "state1", "state2")]
                + [(name, ctypes.c_int64) for name in ("cap", "end", "context", "P", "d")]
                + [("a1", ctypes.c_float), ("a2", ctypes.c_float)])


def tcn_stream(blocks: ctypes.Array, acc: torch.Tensor, batch: int, frames: int, n_bn: int, hidden: int,
               eps: float) -> None:
    """Runs every block over ``acc [B·F, W]`` (``[x | skip]``, contiguous float32) in place: the
    histories, norm sums and ends in ``blocks`` are updated. Every history must have room for
    ``frames`` more frames (``context + frames <= cap``)."""
    rows, width = acc.shape
    h = acc.new_empty(rows, hidden)
    z = acc.new_empty(rows, hidden)
    status = _tcn(ctypes.addressof(blocks), len(blocks), acc.data_ptr(), batch, frames, n_bn, hidden, width,
                  float(eps), h.data_ptr(), z.data_ptr(), torch.get_num_threads())
    if status != 0:
        raise MemoryError("audiomask.native: a history buffer is too short, or no scratch memory")


def posix_threads(on: bool) -> None:
    """Run the multi-threaded kernels on POSIX threads of their own even where PyTorch's OpenMP
    team is available (for tests of that path; the team is faster: its threads are awake and
    do not compete with it for the cores)."""
    _posix(int(on))
