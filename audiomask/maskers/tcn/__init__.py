"""The TCN masker of Conv-TasNet and its implementations, one module per role.

* :mod:`.masker` — ``TCNMasker`` and its block as PyTorch modules: the reference every other
  path equals, and the path autograd, CUDA and exports take;
* :mod:`.dispatch` — :func:`select_path`, which implementation a call runs, and the one
  weights layout they all read (:func:`~.dispatch.tcn_weights`);
* :mod:`.cpu_inference` — the gLN TCN without autograd on the CPU (C kernels, norms folded);
* :mod:`.cpu_training` — the gLN TCN's training blocks on the CPU (recomputing backward);
* :mod:`.stream_step` / :mod:`.stream_step_c` — a causal TCN's streaming step, in PyTorch ops
  and in one C call.
"""

from audiomask.maskers.tcn.masker import MASK_ACTIVATIONS, DepthwiseTCNBlock, TCNMasker, TCNStreamState
from audiomask.maskers.tcn.dispatch import PATHS, select_path

__all__ = ["MASK_ACTIVATIONS", "PATHS", "DepthwiseTCNBlock", "TCNMasker", "TCNStreamState", "select_path"]
