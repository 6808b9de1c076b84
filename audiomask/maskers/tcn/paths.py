"""Which implementation of the TCN masker a call runs — decided here and nowhere else.

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
"""

from __future__ import annotations

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
