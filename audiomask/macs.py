"""Compute cost: multiply-accumulates (MACs) per second of audio, for any model.

Counting uses PyTorch's own :class:`torch.utils.flop_counter.FlopCounterMode`, which sees every
ATen matrix product and convolution a forward pass runs — ``nn.Conv1d/2d``, ``ConvTranspose``,
``Linear``, ``torch.matmul``/``bmm``/``einsum``, scaled-dot-product attention — however a model
calls them (modules, functionals or tensor methods). MACs = FLOPs / 2. Fused kernels that the
stock counter does not know are added here: the CPU (oneDNN) and cuDNN recurrent layers behind
``nn.LSTM``, the native fast path of ``nn.MultiheadAttention`` and CPU flash attention.

Not counted, as in most papers' MAC figures: element-wise work (norms, activations, softmax,
mask products), FFTs (the STFT/iSTFT) and resampling.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from audiomask import accel

aten = torch.ops.aten


def _rnn_layer_flops(input_shape, w_ih, w_hh, *args, out_shape=None, **kwargs) -> int:
    # aten.mkldnn_rnn_layer: one layer and direction; every step multiplies the input by W_ih
    # and the state by W_hh. The input is [T, B, I] or [B, T, I] — either way T·B steps.
    steps = math.prod(input_shape[:-1])
    return 2 * steps * (math.prod(w_ih) + math.prod(w_hh))


def _cudnn_rnn_flops(input_shape, weights, *args, out_shape=None, **kwargs) -> int:
    # aten._cudnn_rnn: all layers and directions; the 2-D tensors are the weight matrices.
    # Exact for one layer; deeper layers see the previous layer's output, of the same length.
    steps = math.prod(input_shape[:-1]) if len(input_shape) == 3 else input_shape[0]
    return 2 * steps * sum(math.prod(w) for w in weights if len(w) == 2)


def _native_mha_flops(q, k, v, embed_dim, num_head, qkv_weight, qkv_bias, proj_weight, proj_bias,
                      *args, out_shape=None, **kwargs) -> int:
    # nn.MultiheadAttention's inference fast path: in-projections, scores, weighted sum, out-projection.
    batch, lq, lk = q[0], q[1], k[1]
    macs = batch * (lq * embed_dim * embed_dim + 2 * lk * embed_dim * embed_dim  # q, k, v projections
                    + 2 * lq * lk * embed_dim  # QKᵀ and A·V over all heads
                    + lq * embed_dim * embed_dim)  # output projection
    return 2 * macs


def _cpu_flash_attention_flops(q, k, v, *args, out_shape=None, **kwargs) -> int:
    # [B, H, L, E] queries, [B, H, S, E] keys, [B, H, S, Ev] values
    *lead, lq, e = q
    s, ev = k[-2], v[-1]
    return 2 * math.prod(lead) * lq * s * (e + ev)


EXTRA_FORMULAS: dict[Any, Any] = {
    aten.mkldnn_rnn_layer: _rnn_layer_flops,
    aten._cudnn_rnn: _cudnn_rnn_flops,
    aten._native_multi_head_attention: _native_mha_flops,
    aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_attention_flops,
}


def _count(model: torch.nn.Module, inputs: tuple[Any, ...]) -> FlopCounterMode:
    counter = FlopCounterMode(display=False, custom_mapping=EXTRA_FORMULAS)
    with accel.force("reference"), torch.no_grad(), counter:  # kernels' work is invisible: the modules
        model(*inputs)
    return counter


def macs_of(model: torch.nn.Module, *inputs: Any) -> int:
    """MACs of one forward pass ``model(*inputs)`` (run without gradients)."""
    return _count(model, inputs).get_total_flops() // 2


def macs_by_module(model: torch.nn.Module, *inputs: Any, depth: int = 2) -> dict[str, int]:
    """MACs of one forward pass ``model(*inputs)`` per submodule, ``depth`` levels down:
    ``{"TIGER": …, "TIGER.masker": …, "TIGER.masker.separator": …}``. A module called several
    times (a shared block) holds the sum over its calls."""
    counts = _count(model, inputs).get_flop_counts()
    return {name: sum(ops.values()) // 2 for name, ops in counts.items()
            if name != "Global" and name.count(".") <= depth}


def count_macs(model: torch.nn.Module, seconds: float = 1.0, sample_rate: int | None = None,
               batch: int = 1) -> int:
    """Multiply-accumulates per second of audio for one forward pass of ``model``.

    The model separates ``seconds`` of random input at ``sample_rate`` (default: the model's
    own) for each of ``batch`` mixtures; the MACs of that pass are divided by ``seconds`` and
    ``batch``. Models whose cost grows faster than the length (attention over all frames, as in
    TIGER and MossFormer) are usually quoted for 1 s of input, the default.

    >>> count_macs(audiomask.build("convtasnet", "paper")) / 1e9  # G/s at 8 kHz
    """
    rate = sample_rate or getattr(model, "sample_rate", None)
    if not rate:
        raise ValueError("count_macs: give sample_rate= for a model without a sample_rate attribute")
    length = round(seconds * rate)
    if length < 1:
        raise ValueError(f"count_macs: {seconds} s at {rate} Hz is shorter than one sample")
    was_training = model.training
    model.eval()
    try:
        total = macs_of(model, torch.randn(batch, length, generator=torch.Generator().manual_seed(0)))
    finally:
        model.train(was_training)
    return round(total / (length / rate) / batch)
