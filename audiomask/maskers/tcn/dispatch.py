"""The contract between the TCN's modules and its implementations: which implementation a
call runs (:func:`select_path`) and the one weights layout they all read (:func:`tcn_weights`).

**Which runs** — decided here and nowhere else:

* ``"cpu_inference"`` (:mod:`.cpu_inference`): no gradient wanted, on the CPU;
* ``"cpu_training"`` (:mod:`.cpu_training`): gradients wanted, on the CPU;
* ``"triton"``: CUDA tensors (:func:`audiomask.kernels.use_triton`) — the modules'
  computation with each block on the fused Triton kernels
  (:func:`audiomask.kernels.tcn_block_forward`; per op, the kernel policy may still keep the
  PyTorch reference where it measured it faster);
* ``"modules"`` (:meth:`TCNMasker.module_features <.masker.TCNMasker.module_features>`):
  everything else — causal or non-gLN TCNs on the CPU, CPUs without AVX-512, other dtypes,
  PReLUs with a slope per channel, no C kernels built,
  ``AUDIOMASK_KERNELS=reference`` (:mod:`audiomask.accel`).

Both CPU paths need the same thing of a masker (:func:`cpu_fusable`): a non-causal gLN TCN
with one PReLU slope per activation, float32 CPU input, and the C kernels built; and they run
only where :func:`audiomask.accel.fuse_on_cpu` says so (a rule on the CPU's capability,
never a timing, so that two runs of one seed take the same path). Streaming
(causal TCNs) has its own step (:mod:`.stream_step`, :mod:`.stream_step_c`).

**What they read** — the TCN's weights in the one layout every implementation reads.

:func:`tcn_weights` unpacks a whole masker: :func:`block_weights` each a :class:`~audiomask.maskers.tcn.DepthwiseTCNBlock` into a
:class:`BlockWeights` and :func:`head_weights` the masker's input norm, bottleneck and mask
head into a :class:`HeadWeights` — the only places that know the modules' attribute names
and parameter shapes. The CPU inference path (:mod:`.cpu_inference`, which folds the norms
into them), the CPU training path (:mod:`.cpu_training`), the streaming steps
(:mod:`.stream_step`, :mod:`.stream_step_c`) and the exported streaming graph
(:mod:`audiomask.export.graphs`) all start from these. The tensors are views of (or, for the
stacked output convs and the transposed taps, differentiable functions of) the parameters,
so gradients reach the modules. :data:`MASK_ACTIVATIONS`, the head's last step, is here for the
same reason: every path applies it.

Symbols: B (bottleneck), H (block channels), Sc (skip channels, 0 without skips), P (taps),
d (dilation), N (encoder filters), C (sources).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
from torch import Tensor

from audiomask import accel, kernels, native
from audiomask.nn.norms import GlobalLayerNorm

PATHS = ("cpu_inference", "cpu_training", "triton", "modules")


def cpu_fusable(masker, x: Tensor) -> bool:
    """Whether the C-kernel paths can compute ``masker`` on ``x`` (a representation or the
    waveform it comes from: only its device and dtype are read)."""
    return (not masker.causal and isinstance(masker.input_norm, GlobalLayerNorm) and native.BUILT
            and x.device.type == "cpu" and x.dtype == torch.float32
            and all(b.in_act.weight.numel() == 1 and b.dw_act.weight.numel() == 1 for b in masker.blocks))


def runs_cpu_inference(masker, x: Tensor) -> bool:
    """Whether a call on ``x`` now takes ``"cpu_inference"`` (no gradient wanted, fusable)."""
    return select_path(masker, x) == "cpu_inference"


def select_path(masker, rep: Tensor) -> str:
    """The implementation (one of :data:`PATHS`) that computes ``masker(rep)`` now. The
    acceleration policy is asked first, so that a call it keeps on the modules (``reference``
    mode, a CPU outside the fused rule) reads nothing else."""
    if accel.fuse_on_cpu() and cpu_fusable(masker, rep):
        return "cpu_training" if torch.is_grad_enabled() else "cpu_inference"
    if rep.device.type == "cpu" and accel.mode() != "triton":
        return "modules"
    return "triton" if kernels.use_triton(rep) else "modules"


#: the mask activations a TCN masker offers, by name: each maps scores with the source axis at
#: dim 1 (``[B, C, N, F]`` or frames-major ``[T, C, N]``) to masks — ``"softmax"`` across
#: sources, the others element-wise (``"linear"``: the scores as they are)
MASK_ACTIVATIONS = {"sigmoid": torch.sigmoid, "relu": torch.relu,
                    "softmax": functools.partial(torch.softmax, dim=1), "linear": torch.nn.Identity()}


class BlockWeights(NamedTuple):
    """One TCN block ``y = [Wᵣₑₛ; W_skip] norm₂(prelu(dwconv(norm₁(prelu(Wᵢₙ x + bᵢₙ, a₁))), a₂)) + b``."""

    w_in: Tensor   # Wᵢₙ, 1×1 conv B → H: [H, B]
    b_in: Tensor   # bᵢₙ [H]
    a1: Tensor     # PReLU slope after it: [1] or [H]
    g1: Tensor     # first norm's gain γ₁ [H]
    be1: Tensor    # and bias β₁ [H]
    taps: Tensor   # depthwise conv taps [P, H] (tap k reads frame t + k·d − pad), contiguous
    b_dw: Tensor   # depthwise conv bias [H]
    a2: Tensor     # PReLU slope after it: [1] or [H]
    g2: Tensor     # second norm's gain γ₂ [H]
    be2: Tensor    # and bias β₂ [H]
    w_out: Tensor  # [Wᵣₑₛ; W_skip], residual then skip 1×1 convs: [B + Sc, H]
    b_out: Tensor  # [bᵣₑₛ; b_skip] [B + Sc]
    dilation: int  # d
    pad: int       # frames of zero padding on the left: (P−1)·d causal, (P−1)·d/2 otherwise
    eps1: float    # the norms' ε
    eps2: float

    @property
    def context(self) -> int:
        """Frames of left context the depthwise conv needs: ``(P − 1) · d``."""
        return (self.taps.shape[0] - 1) * self.dilation


class HeadWeights(NamedTuple):
    """The masker around its blocks: input norm → bottleneck → … → PReLU → mask conv."""

    norm_w: Tensor   # input norm's gain [N]
    norm_b: Tensor   # and bias [N]
    w_bn: Tensor     # bottleneck 1×1 conv N → B: [B, N]
    b_bn: Tensor     # [B]
    slope: Tensor    # PReLU slope before the mask conv: [1] or [Sc or B]
    w_mask: Tensor   # mask 1×1 conv (Sc or B) → C·N: [C·N, Sc or B]
    b_mask: Tensor   # [C·N]
    eps: float       # the input norm's ε


def tensors_of(weights: BlockWeights | HeadWeights) -> tuple[Tensor, ...]:
    """The tensor fields of ``weights``, in order (an exported graph keeps them as initializers)."""
    return tuple(w for w in weights if isinstance(w, Tensor))


def with_tensors(weights, tensors) -> BlockWeights | HeadWeights:
    """``weights`` with its tensor fields replaced, in order, by ``tensors``."""
    new = iter(tensors)
    return type(weights)(*(next(new) if isinstance(w, Tensor) else w for w in weights))


def block_weights(block) -> BlockWeights:
    """The weights of a :class:`~audiomask.maskers.tcn.DepthwiseTCNBlock`."""
    outs = [block.res_conv] + ([block.skip_conv] if block.skip_conv is not None else [])
    return BlockWeights(
        w_in=block.in_conv.weight[:, :, 0], b_in=block.in_conv.bias, a1=block.in_act.weight,
        g1=block.in_norm.weight, be1=block.in_norm.bias,
        taps=block.dw_conv.weight[:, 0].t().contiguous(), b_dw=block.dw_conv.bias, a2=block.dw_act.weight,
        g2=block.dw_norm.weight, be2=block.dw_norm.bias,
        w_out=torch.cat([c.weight[:, :, 0] for c in outs]), b_out=torch.cat([c.bias for c in outs]),
        dilation=block.dilation, pad=block.padding[0],
        eps1=float(block.in_norm.eps), eps2=float(block.dw_norm.eps))


def tcn_weights(masker) -> tuple[HeadWeights, list[BlockWeights]]:
    """A :class:`~audiomask.maskers.tcn.TCNMasker`'s head and every block's weights, read
    once (a path reads them before its loop over blocks, not inside it)."""
    return head_weights(masker), [block_weights(b) for b in masker.blocks]


def head_weights(masker) -> HeadWeights:
    """The input norm, bottleneck and mask head of a :class:`~audiomask.maskers.tcn.TCNMasker`."""
    norm = masker.input_norm
    return HeadWeights(norm_w=norm.weight, norm_b=norm.bias, w_bn=masker.bottleneck.weight[:, :, 0],
                       b_bn=masker.bottleneck.bias, slope=masker.out_act.weight,
                       w_mask=masker.out_conv.weight[:, :, 0], b_mask=masker.out_conv.bias, eps=float(norm.eps))
