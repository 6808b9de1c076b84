"""Where audiomask may leave plain PyTorch: one switch, one policy.

Three accelerations exist, each equal to the PyTorch computation it replaces (to float32
rounding, tested):

* the Triton kernels of :mod:`audiomask.kernels` (CUDA tensors; CPU tensors only under
  ``TRITON_INTERPRET=1``), per call chosen by :class:`audiomask.kernels.Policy`;
* the C kernels of :mod:`audiomask.native` (CPU: the causal TCN's streaming step, the gLN
  TCN's frames-major inference and training paths);
* oneDNN's inner product for CPU inference (:mod:`audiomask.nn.onednn`; a private PyTorch
  op, probed against ``F.linear`` before first use and replaced by it when the probe fails).

One environment switch, ``AUDIOMASK_KERNELS`` (:data:`ENV`), sets the :func:`mode` for all of
them; :func:`force` sets it for a ``with`` block (tests, export tracing, MAC counting):

* ``auto`` (default): each acceleration runs where it applies and its rule says so — the
  Triton policy's rules and measurements on CUDA; on the CPU the C-fused gLN TCN paths only
  where :func:`fuse_on_cpu` says so, the C streaming step and oneDNN wherever they are built;
* ``reference``: plain PyTorch everywhere (no Triton, no C, no oneDNN);
* ``triton``: every acceleration wherever it applies, with no rule and no timing (the fused
  kernels on every CPU; Triton on CPU tensors under its interpreter).
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator, Optional

import torch

#: the environment switch
ENV = "AUDIOMASK_KERNELS"
MODES = ("auto", "reference", "triton")
_override: Optional[str] = None


def mode() -> str:
    """The acceleration mode: :func:`force`'s if one is active, else ``$AUDIOMASK_KERNELS``
    (default ``auto``)."""
    m = _override or os.environ.get(ENV) or "auto"
    if m not in MODES:
        raise ValueError(f"{ENV}={m!r}: choose one of {', '.join(MODES)}")
    return m


@contextlib.contextmanager
def force(m: str) -> Iterator[None]:
    """Run the ``with`` block in mode ``m`` (one of :data:`MODES`)."""
    global _override
    if m not in MODES:
        raise ValueError(f"unknown kernel mode {m!r}; choose one of {', '.join(MODES)}")
    old, _override = _override, m
    try:
        yield
    finally:
        _override = old


def accelerated() -> bool:
    """Whether any acceleration may run (every mode but ``reference``)."""
    return mode() != "reference"


#: CPUs (``torch.backends.cpu.get_cpu_capability()``) where the C-fused gLN TCN paths run in
#: ``auto`` mode. Measured: on a 2-core AMD EPYC with AVX2 only, the modules were 2x faster at
#: inference (mini2mix, 10 s: 1.1-1.4 s vs 2.3-2.7 s) and 1.2-1.5x at training
#: (``bench/results/train_paths-epyc-avx2.json``); on the AVX-512 machine of the peer benches
#: the C inference path ran 2.8x Asteroid's module forward with the same weights
#: (``bench/results/peers-2026-11-21b.md``).
FUSED_CPU_CAPABILITIES = ("AVX512",)


def fuse_on_cpu() -> bool:
    """Whether the C-fused gLN TCN paths (CPU inference and training) run rather than the
    modules: by rule, never timed, so that runs are reproducible — ``triton`` mode: yes;
    ``reference``: no; ``auto``: where this CPU has one of :data:`FUSED_CPU_CAPABILITIES`."""
    m = mode()
    if m != "auto":
        return m == "triton"
    return torch.backends.cpu.get_cpu_capability() in FUSED_CPU_CAPABILITIES
