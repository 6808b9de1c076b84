"""Dense layers over frames-major rows ``[T, K]`` through oneDNN, for CPU inference.

PyTorch's ``addmm``/``F.linear`` run a float32 GEMM through MKL, which on the AMD EPYC CPUs
this project is measured on reaches about 185 GFLOP/s on 2 cores. oneDNN's inner-product
primitive — reached through ``torch.ops.mkldnn._linear_pointwise``, the op PyTorch's own
compiler emits for linear layers on CPU — runs Conv-TasNet's 1×1 convs (``[4000, 128] ×
[128, 512]``, ``[4000, 512] × [512, 256]``) at 400–500 GFLOP/s on the same cores. Its
``binary`` variant adds a tensor to the product in the same pass (``x Wᵀ + other``).

:func:`available` decides, by a probe on first use (the op exists, this build has oneDNN,
and it agrees with ``F.linear``); otherwise the functions are ``F.linear`` and ``addmm``. The
acceleration mode (:mod:`audiomask.accel`) is the callers' to ask, once per call of theirs:
the C-fused TCN paths, which run only where the policy chose them, and the benches
(:func:`enabled`). No autograd: callers use them under ``no_grad``/``inference_mode``.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

from audiomask import accel


@functools.lru_cache(maxsize=None)
def available() -> bool:
    """Whether the op exists here and agrees with ``F.linear`` (probed once)."""
    try:
        op = torch.ops.mkldnn._linear_pointwise
        if not torch.backends.mkldnn.is_available():
            return False
        gen = torch.Generator().manual_seed(0)
        x, w = torch.randn(33, 20, generator=gen), torch.randn(17, 20, generator=gen)
        b, o = torch.randn(17, generator=gen), torch.randn(33, 17, generator=gen)
        ref = F.linear(x, w, b)
        ok = torch.allclose(op(x, w, b, "none", [], ""), ref, atol=1e-4)
        return ok and torch.allclose(op.binary(x, o, w, None, "add"), ref - b + o, atol=1e-4)
    except (AttributeError, RuntimeError):
        return False


def enabled() -> bool:
    """Whether the oneDNN ops are used: :func:`available` and not in ``reference`` mode."""
    return accel.accelerated() and available()


def _usable(x: Tensor) -> bool:
    return x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 2 and available()


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x Wᵀ + b`` for rows ``x [T, K]``, ``weight [N, K]``, ``bias [N]`` → ``[T, N]``."""
    if _usable(x):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    return F.linear(x, weight, bias)


def linear_add(x: Tensor, other: Tensor, weight: Tensor) -> Tensor:
    """``x Wᵀ + other`` in one pass: ``x [T, K]``, ``other [T, N]``, ``weight [N, K]`` → a new
    ``[T, N]``."""
    if _usable(x) and other.is_contiguous():
        return torch.ops.mkldnn._linear_pointwise.binary(x, other, weight, None, "add")
    return torch.addmm(other, x, weight.t())
