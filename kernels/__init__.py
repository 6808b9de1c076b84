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

Dispatch (one function per op, so a CPU fast path can be added beside the Triton one):
Triton runs when the input is a CUDA tensor of a floating dtype below float64, Triton
imports, the code is not being traced/compiled, and ``AUDIOMASK_KERNELS`` is not
``reference``. Otherwise the op runs its PyTorch reference. ``AUDIOMASK_KERNELS``:

* ``auto`` (default): as above;
* ``reference``: always the PyTorch reference;
* ``triton``: Triton also on CPU tensors — only under the interpreter: ``TRITON_INTERPRET=1``
  set before the kernels are first loaded and kept while they run (Triton reads it at both
  times; the tests and ``bench/kernels.py --interpret`` do this); an error rather than a
  silent fallback when that is impossible.

:func:`force` does the same for a ``with`` block (tests). Triton itself is imported only when
a CUDA tensor (or a forced mode) asks for it, so CPU users never pay for the import.
"""

from __future__ import annotations

import contextlib
import functools
import os
from typing import Iterator, Optional, Tuple

import torch
from torch import Tensor

from .reference import (
    NORMS,
    reference_depthwise_conv1d,
    reference_dwconv_prelu_norm,
    reference_norm,
    reference_prelu_norm,
)

__all__ = [
    "dwconv_prelu_norm", "prelu_norm", "depthwise_conv1d", "use_triton", "force", "mode",
    "triton_available", "interpreting", "norm_name", "tcn_block_forward",
    "reference_dwconv_prelu_norm", "reference_prelu_norm", "reference_depthwise_conv1d",
    "reference_norm", "NORMS", "ENV",
]

#: the environment switch: "auto" | "reference" | "triton"
ENV = "AUDIOMASK_KERNELS"
MODES = ("auto", "reference", "triton")
_TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_override: Optional[str] = None


def mode() -> str:
    """The dispatch mode: :func:`force`'s if one is active, else ``$AUDIOMASK_KERNELS``."""
    m = _override or os.environ.get(ENV) or "auto"
    if m not in MODES:
        raise ValueError(f"{ENV}={m!r}: choose one of {', '.join(MODES)}")
    return m


@contextlib.contextmanager
def force(m: str) -> Iterator[None]:
    """Run the ``with`` block in dispatch mode ``m`` (``"reference"`` or ``"triton"``)."""
    global _override
    if m not in MODES:
        raise ValueError(f"unknown kernel mode {m!r}; choose one of {', '.join(MODES)}")
    old, _override = _override, m
    try:
        yield
    finally:
        _override = old


def interpreting() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


@functools.lru_cache(maxsize=None)
def triton_available() -> bool:
    """Whether ``triton`` imports (cached; imports it the first time)."""
    try:
        import triton  # noqa: F401
    except Exception:
        return False
    return True


@functools.lru_cache(maxsize=None)
def _impl():
    from . import _triton

    return _triton


def _tracing() -> bool:
    compiler = getattr(torch, "compiler", None)
    if compiler is not None and getattr(compiler, "is_compiling", lambda: False)():
        return True
    return torch.jit.is_scripting() or torch.jit.is_tracing()


def use_triton(x: Tensor) -> bool:
    """Whether the ops run their Triton kernels on ``x`` (see the module docstring)."""
    if x.dtype not in _TRITON_DTYPES:
        return False
    if x.is_cuda:
        return mode() != "reference" and not _tracing() and triton_available()
    if mode() != "triton":
        return False
    if not triton_available():
        raise RuntimeError(f"{ENV}=triton needs triton (pip install 'audiomask[kernels]')")
    if not interpreting() or not _impl().INTERPRETED:
        raise RuntimeError(f"{ENV}=triton on CPU tensors needs TRITON_INTERPRET=1 set before "
                           "audiomask.kernels first loads its Triton kernels")
    return True


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
    if use_triton(x) and x.shape[-1] + padding[0] + padding[1] > (dw_weight.shape[-1] - 1) * dilation:
        return _impl().ConvPReLUNorm.apply(x, dw_weight, dw_bias, prelu_weight, norm_weight, norm_bias,
                                           int(dilation), int(padding[0]), int(padding[1]), norm, float(eps))
    return reference_dwconv_prelu_norm(x, dw_weight, dw_bias, dilation, padding, prelu_weight,
                                       norm_weight, norm_bias, norm, eps)


def prelu_norm(x: Tensor, prelu_weight: Tensor, norm_weight: Tensor, norm_bias: Tensor, norm: str,
               eps: float) -> Tensor:
    """``norm(prelu(x))`` on ``x [B, C, T]``; equals :func:`reference_prelu_norm`."""
    _check_norm(norm)
    if use_triton(x) and x.shape[-1] > 0:
        return _impl().ConvPReLUNorm.apply(x, None, None, prelu_weight, norm_weight, norm_bias,
                                           1, 0, 0, norm, float(eps))
    return reference_prelu_norm(x, prelu_weight, norm_weight, norm_bias, norm, eps)


def depthwise_conv1d(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None, dilation: int = 1,
                     padding: Tuple[int, int] = (0, 0), channels_last: bool = False,
                     residual: bool = False) -> Tensor:
    """Grouped depthwise conv ``weight [C, G, P]`` of ``x [B, C·G, T]`` (``[B, T, C·G]`` with
    ``channels_last``, read in place: no transpose or padded copy), ``+ x`` with
    ``residual``. Equals :func:`reference_depthwise_conv1d`."""
    if residual and weight.shape[1] != 1:
        raise ValueError("residual needs a plain depthwise conv (one input channel per group)")
    if use_triton(x):
        t_in = x.shape[1 if channels_last else 2]
        t_out = t_in + padding[0] + padding[1] - (weight.shape[-1] - 1) * dilation
        if t_out > 0 and (not residual or t_out == t_in):
            return _impl().DepthwiseConv1d.apply(x, weight, bias, int(dilation), int(padding[0]),
                                                 int(padding[1]), bool(channels_last), bool(residual))
    return reference_depthwise_conv1d(x, weight, bias, dilation, padding, channels_last, residual)


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
        y = block.dw_norm(block.dw_act(block.dw_conv(torch.nn.functional.pad(y, block.dw_padding()))))
    else:
        y = dwconv_prelu_norm(y, block.dw_conv.weight, block.dw_conv.bias, block.dilation,
                              block.dw_padding(), block.dw_act.weight, block.dw_norm.weight,
                              block.dw_norm.bias, kind, block.dw_norm.eps)
    skip = block.skip_conv(y) if block.skip_conv is not None else None
    return block.res_conv(y), skip
