"""Fused GPU kernels (Triton) for the hot paths, each with the PyTorch reference it must equal.

Installed as ``audiomask.kernels`` (the top-level ``kernels/`` folder of the repository).

=========================  ==========================================  ===============================
op                         fuses                                       reference (module math)
=========================  ==========================================  ===============================
:func:`dwconv_prelu_norm`  zero padding + dilated depthwise conv +     TCN block
                           bias + PReLU + gLN / cLN / chanLN           ``dw_norm(dw_act(dw_conv(pad)))``
:func:`prelu_norm`         PReLU + gLN / cLN / chanLN                  TCN block ``in_norm(in_act(·))``
:func:`depthwise_conv1d`   zero padding + (grouped) depthwise conv     FFConvM conv residual,
                           (+ bias) (+ residual), either layout        FSMN dense memory convs
=========================  ==========================================  ===============================

The kernels are ``torch.library`` custom ops (``torch.ops.audiomask.conv_prelu_norm``,
``depthwise_conv1d`` and their ``_backward`` ops, in :mod:`._triton`): each has a fake
implementation (shapes only) and a registered backward, so autograd, ``torch.compile`` and
``torch.export`` see one op, not the Triton launches inside it.

Dispatch (one function per op, so a CPU fast path can be added beside the Triton one):
Triton may run when the input is a CUDA tensor of a floating dtype below float64, Triton
imports, the code is not being TorchScript-traced (under ``torch.compile`` only in
``triton`` mode: the policy does not time inside a graph being compiled), and the acceleration mode
(:func:`audiomask.accel.mode`, set by ``AUDIOMASK_KERNELS``) is not ``reference``
(:func:`use_triton`). Whether it then does is the :class:`Policy`'s call, so that a fused
kernel runs only where it is faster than the PyTorch reference: a documented rule
(:data:`REFERENCE_RULES`), else both paths timed once per shape class and the faster one
cached; ``export``/``restore`` carry its measured choices through a training run's state. In
``triton`` mode the fused kernel runs wherever it applies, with no rule and no timing; on CPU
tensors only under the interpreter (``TRITON_INTERPRET=1`` set before the kernels are first
loaded and kept while they run — Triton reads it at both times; the tests and
``bench/kernels.py --interpret`` do this), and an error rather than a silent fallback when
that is impossible. Triton itself is imported only when a CUDA tensor (or a forced mode) asks
for it, so CPU users never pay for the import.
"""

from __future__ import annotations

import os
import statistics
from typing import Callable, Dict, Hashable, Optional, Tuple

import torch
from torch import Tensor

from audiomask import accel

from .reference import (
    NORMS,
    reference_depthwise_conv1d,
    reference_dwconv_prelu_norm,
    reference_norm,
    reference_prelu_norm,
)

__all__ = [
    "dwconv_prelu_norm", "prelu_norm", "depthwise_conv1d", "use_triton",
    "Policy", "POLICY", "REFERENCE_RULES", "shape_class",
    "triton_available", "interpreting", "norm_name", "tcn_block_forward",
    "reference_dwconv_prelu_norm", "reference_prelu_norm", "reference_depthwise_conv1d",
    "reference_norm", "NORMS",
]

_TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def interpreting() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


_loaded: Dict[str, object] = {}  # "triton": whether it imports; "impl": the kernels module


def triton_available() -> bool:
    """Whether ``triton`` imports (remembered; imports it the first time)."""
    if "triton" not in _loaded:
        try:
            import triton  # noqa: F401
        except Exception:
            _loaded["triton"] = False
        else:
            _loaded["triton"] = True
    return bool(_loaded["triton"])


def _impl():
    """:mod:`._triton`, imported the first time a kernel runs (a plain dict, not
    ``functools.lru_cache``, which ``torch.compile`` does not trace as a cache)."""
    if "impl" not in _loaded:
        from . import _triton

        _loaded["impl"] = _triton
    return _loaded["impl"]


def _compiling() -> bool:
    compiler = getattr(torch, "compiler", None)
    return compiler is not None and getattr(compiler, "is_compiling", lambda: False)()


def use_triton(x: Tensor) -> bool:
    """Whether the ops run their Triton kernels on ``x`` (see the module docstring)."""
    if x.dtype not in _TRITON_DTYPES or torch.jit.is_scripting() or torch.jit.is_tracing():
        return False
    if _compiling() and accel.mode() != "triton":
        return False  # no timing inside a graph being compiled: the kernels only when forced
    if x.is_cuda:
        return accel.mode() != "reference" and triton_available()
    if accel.mode() != "triton":
        return False
    if not triton_available():
        raise RuntimeError(f"{accel.ENV}=triton needs triton (pip install 'audiomask[kernels]')")
    if not interpreting() or not _impl().INTERPRETED:
        raise RuntimeError(f"{accel.ENV}=triton on CPU tensors needs TRITON_INTERPRET=1 set before "
                           "audiomask.kernels first loads its Triton kernels")
    return True


# ------------------------------------------------------------------------------------------
# policy: a fused kernel only where it is faster
# ------------------------------------------------------------------------------------------
def _reference_for_grouped_conv(key: tuple) -> bool:
    """``depthwise_conv1d`` with several input channels per output channel (MossFormer2's dense
    FSMN memory): the Triton kernel was 4.3x slower than cuDNN on an H200 (0.23x, issue 23),
    and MossFormer2 inference 0.61x with it."""
    return key[0] == "depthwise_conv1d" and dict(key[1:]).get("groups", 1) > 1


#: (reason, predicate on a shape class): shape classes that always take the reference, from
#: measurements; every other class is timed once (:class:`Policy`)
REFERENCE_RULES: Tuple[Tuple[str, Callable[[tuple], bool]], ...] = (
    ("grouped depthwise conv: cuDNN 4x faster on H200", _reference_for_grouped_conv),
)


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def _wants_grad(args: tuple) -> bool:
    """Whether a call on ``args`` builds a graph (then its backward is part of its cost)."""
    return torch.is_grad_enabled() and any(torch.is_tensor(a) and a.requires_grad for a in args)


def shape_class(op: str, x: Tensor, grad: Optional[bool] = None, **conf) -> tuple:
    """The key under which :class:`Policy` caches its choice for a call of ``op`` on ``x``:
    the op, device, dtype, whether gradients are wanted (``grad``; default: whether ``x``
    wants one), every dimension but the last (frames), the frames rounded up to a power of two
    (so that inputs of many lengths share a few measurements), and the op's configuration
    ``conf`` (sorted ``(name, value)`` pairs)."""
    grad = _wants_grad((x,)) if grad is None else grad
    head = (op, ("device", str(x.device)), ("dtype", str(x.dtype)), ("grad", grad),
            ("dims", tuple(x.shape[:-1])), ("frames", _pow2_at_least(x.shape[-1])))
    return head + tuple(sorted(conf.items()))


def _cuda_ms(fn: Callable[[], object], iters: int = 3) -> float:
    """Median milliseconds of ``fn()`` over ``iters`` calls after one warm-up (CUDA events)."""
    fn()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


class Policy:
    """Chooses ``"triton"`` or ``"reference"`` for a shape class (:func:`shape_class`).

    In order: a :data:`REFERENCE_RULES` match → the reference; a cached choice; else both
    paths are timed once with ``timer`` (a callable taking a zero-argument function and
    returning its time; CUDA events by default) and the faster is cached — the fused kernel
    must win by ``margin`` (default 2 %), so timing noise settles ties on the reference. Where
    timing is impossible (inside CUDA-graph capture) an unmeasured class takes the reference;
    where it fails (``RuntimeError``, e.g. out of memory) the class keeps the reference.
    ``choices`` holds the decisions with their times (``bench/kernels.py`` prints them)."""

    def __init__(self, timer: Optional[Callable[[Callable[[], object]], float]] = None,
                 rules: Tuple[Tuple[str, Callable[[tuple], bool]], ...] = REFERENCE_RULES,
                 margin: float = 0.02) -> None:
        self.timer = timer  # None: CUDA events
        self.rules = rules
        self.margin = margin
        self.choices: Dict[Hashable, Tuple[str, str]] = {}
        self.restored: Dict[str, str] = {}  # repr(shape class) -> choice, from a run's state

    def choose(self, key: tuple, run_fused: Callable[[], object], run_reference: Callable[[], object]) -> str:
        if key in self.choices:
            return self.choices[key][0]
        restored = self.restored.get(repr(key))
        if restored is not None:
            self.choices[key] = (restored, "measured: restored from the run's state")
            return restored
        for reason, applies in self.rules:
            if applies(key):
                self.choices[key] = ("reference", f"rule: {reason}")
                return "reference"
        if _capturing():
            return "reference"  # not cached: measured on the first call outside capture
        try:
            timer = self.timer or _cuda_ms
            fused_ms, reference_ms = timer(run_fused), timer(run_reference)
        except RuntimeError as e:  # e.g. out of memory for the trial's outputs: the reference, no retry
            self.choices[key] = ("reference", f"not measured: {type(e).__name__}: {e}"[:200])
            return "reference"
        choice = "triton" if fused_ms * (1 + self.margin) < reference_ms else "reference"
        self.choices[key] = (choice, f"measured: fused {fused_ms:.4g}, reference {reference_ms:.4g}")
        return choice

    def export(self) -> Dict[str, str]:
        """The measured choices as ``{repr(shape class): choice}`` (a training run stores them
        with its state, so a resumed run takes the same paths and stays bit-exact)."""
        return {repr(k): c for k, (c, why) in self.choices.items() if why.startswith("measured")}

    def restore(self, choices: Dict[str, str]) -> None:
        """Take back choices :meth:`export` wrote (for the shape classes they name)."""
        self.restored.update(choices)

    def clear(self) -> None:
        """Forget every measured choice (e.g. after a change of GPU clocks or of library)."""
        self.choices.clear()
        self.restored.clear()


#: the policy the ops consult in ``auto`` mode
POLICY = Policy()


def _capturing() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()


def _trial(fn: Callable, args: tuple) -> Callable[[], object]:
    """A timing closure: ``fn`` on detached views of ``args`` (forward, plus backward to every
    floating tensor when gradients are wanted) — the caller's autograd graph is untouched."""
    grad = _wants_grad(args)

    def run():
        leaves = tuple(a.detach().requires_grad_(grad and a.is_floating_point()) if torch.is_tensor(a) else a
                       for a in args)
        if not grad:
            with torch.no_grad():
                return fn(*leaves)
        y = fn(*leaves)
        y.backward(torch.ones_like(y))
        return y
    return run


def _fused_wins(key: tuple, fused: Callable, reference: Callable, args: tuple) -> bool:
    """Whether this call runs the fused kernel: always in ``triton`` mode, else the policy's choice."""
    if accel.mode() == "triton":
        return True
    return POLICY.choose(key, _trial(fused, args), _trial(reference, args)) == "triton"


def _check_norm(norm: str) -> None:
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose one of {NORMS}")


# ------------------------------------------------------------------------------------------
# the ops (dispatch)
# ------------------------------------------------------------------------------------------
def dwconv_prelu_norm(x: Tensor, dw_weight: Tensor, dw_bias: Optional[Tensor], dilation: int,
                      padding: Tuple[int, int], prelu_weight: Tensor, norm_weight: Tensor,
                      norm_bias: Tensor, norm: str, eps: float) -> Tensor:
    """``norm(prelu(depthwise_conv(pad(x, padding)) + dw_bias))`` on ``x [B, C, T]``.

    ``dw_weight [C, 1, P]`` at dilation ``d``; ``padding = (left, right)`` zero frames (never
    materialised by the kernel); ``prelu_weight`` one slope or ``[C]``; ``norm`` one of
    ``gLN``, ``cLN``, ``chanLN`` with affine ``norm_weight``/``norm_bias [C]`` and ``eps``.
    Equals :func:`reference_dwconv_prelu_norm`, gradients included.
    """
    _check_norm(norm)
    args = (x, dw_weight, dw_bias, prelu_weight, norm_weight, norm_bias)
    conf = (int(dilation), int(padding[0]), int(padding[1]), norm, float(eps))

    def fused(*a):
        return _impl().conv_prelu_norm(*a, *conf)

    def reference(x, w, b, s, g, beta):
        return reference_dwconv_prelu_norm(x, w, b, dilation, padding, s, g, beta, norm, eps)

    if use_triton(x) and x.shape[-1] + padding[0] + padding[1] > (dw_weight.shape[-1] - 1) * dilation:
        key = shape_class("dwconv_prelu_norm", x, _wants_grad(args), taps=dw_weight.shape[-1], dilation=conf[0],
                          padding=conf[1:3], norm=norm, slopes=prelu_weight.numel(), bias=dw_bias is not None)
        if _fused_wins(key, fused, reference, args):
            return fused(*args)
    return reference(*args)


def prelu_norm(x: Tensor, prelu_weight: Tensor, norm_weight: Tensor, norm_bias: Tensor, norm: str,
               eps: float) -> Tensor:
    """``norm(prelu(x))`` on ``x [B, C, T]``; equals :func:`reference_prelu_norm`."""
    _check_norm(norm)
    args = (x, prelu_weight, norm_weight, norm_bias)

    def fused(x, s, g, beta):
        return _impl().conv_prelu_norm(x, None, None, s, g, beta, 1, 0, 0, norm, float(eps))

    def reference(x, s, g, beta):
        return reference_prelu_norm(x, s, g, beta, norm, eps)

    if use_triton(x) and x.shape[-1] > 0:
        key = shape_class("prelu_norm", x, _wants_grad(args), norm=norm, slopes=prelu_weight.numel())
        if _fused_wins(key, fused, reference, args):
            return fused(*args)
    return reference(*args)


def depthwise_conv1d(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None, dilation: int = 1,
                     padding: Tuple[int, int] = (0, 0), channels_last: bool = False,
                     residual: bool = False) -> Tensor:
    """Grouped depthwise conv ``weight [C, G, P]`` of ``x [B, C·G, T]`` (``[B, T, C·G]`` with
    ``channels_last``, read in place: no transpose or padded copy), ``+ x`` with
    ``residual``. Equals :func:`reference_depthwise_conv1d`."""
    if residual and weight.shape[1] != 1:
        raise ValueError("residual needs a plain depthwise conv (one input channel per group)")
    args = (x, weight, bias)

    def fused(x, w, b):
        return _impl().depthwise_conv1d(x, w, b, int(dilation), int(padding[0]), int(padding[1]),
                                             bool(channels_last), bool(residual))

    def reference(x, w, b):
        return reference_depthwise_conv1d(x, w, b, dilation, padding, channels_last, residual)

    if use_triton(x):
        t_in = x.shape[1 if channels_last else 2]
        t_out = t_in + padding[0] + padding[1] - (weight.shape[-1] - 1) * dilation
        if t_out > 0 and (not residual or t_out == t_in):
            frames_last = x.transpose(1, 2) if channels_last else x
            key = shape_class("depthwise_conv1d", frames_last, _wants_grad(args), groups=weight.shape[1],
                              taps=weight.shape[-1], dilation=int(dilation), padding=(int(padding[0]), int(padding[1])),
                              channels_last=bool(channels_last), residual=bool(residual), bias=bias is not None)
            if _fused_wins(key, fused, reference, args):
                return fused(*args)
    return reference(*args)


# ------------------------------------------------------------------------------------------
# model integration
# ------------------------------------------------------------------------------------------
def norm_name(module: torch.nn.Module) -> Optional[str]:
    """``"gLN"``/``"cLN"``/``"chanLN"`` for the norm modules of :mod:`audiomask.nn.norms`
    (``None`` for anything else, which then keeps the module path)."""
    from audiomask.nn.norms import ChannelLayerNorm, CumulativeLayerNorm, GlobalLayerNorm

    if isinstance(module, GlobalLayerNorm) and module.num_groups == 1 and module.affine:
        return "gLN"
    if isinstance(module, CumulativeLayerNorm):
        return "cLN"
    if isinstance(module, ChannelLayerNorm):
        return "chanLN"
    return None


def tcn_block_forward(block, x: Tensor):
    """Conv-TasNet's ``DepthwiseTCNBlock.forward`` on the fused kernels: 1×1 conv,
    :func:`prelu_norm`, :func:`dwconv_prelu_norm`, then the residual and skip 1×1 convs
    (a norm the kernels do not implement keeps its module). Returns ``(residual, skip)`` like
    the block; the convs stay separate so that an unused one (the last block's residual)
    keeps no gradient, as on the module path."""
    y = block.in_conv(x)
    kind = norm_name(block.in_norm)
    if kind is None:
        y = block.in_norm(block.in_act(y))
    else:
        y = prelu_norm(y, block.in_act.weight, block.in_norm.weight, block.in_norm.bias, kind,
                       block.in_norm.eps)
    kind = norm_name(block.dw_norm)
    if kind is None:
        y = block.dw_norm(block.dw_act(block.dw_conv(torch.nn.functional.pad(y, block.padding))))
    else:
        y = dwconv_prelu_norm(y, block.dw_conv.weight, block.dw_conv.bias, block.dilation,
                              block.padding, block.dw_act.weight, block.dw_norm.weight,
                              block.dw_norm.bias, kind, block.dw_norm.eps)
    skip = block.skip_conv(y) if block.skip_conv is not None else None
    return block.res_conv(y), skip
