"""MossFormer masker: gated single-head transformer blocks with joint local/global attention.

Zhao & Ma, "MossFormer: Pushing the Performance Limit of Monaural Speech Separation using
Gated Single-Head Transformer with Convolution-Augmented Joint Self-Attentions", ICASSP 2023,
Fig. 1. Module layout and numerics follow the authors' code (ModelScope
``models/audio/separation/mossformer.py`` ``MossFormerMaskNet`` and ``mossformer_block.py``):

    rep [B, N, S] → norm (gLN) → 1×1 conv N→D (no bias) → + scaled sinusoidal positions = x
      → R × GatedAttentionUnit (one rotary embedding shared by all) → LayerNorm(eps 1e-6)
      → norm (gLN) → + x → PReLU → 1×1 conv D→C·D
      → per source: tanh(1×1 conv) · sigmoid(1×1 conv) → 1×1 conv D→N (no bias) → ReLU
      → masks [B, C, N, S]

Paper symbols: N (encoder filters, ``in_chan``), D (model width ``d_model``), R (``n_layers``),
C (``n_src``), g (chunk length ``group_size``), S (query/key width ``qk_dim``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from audiomask.nn.attention import GatedAttentionUnit, RotaryEmbedding, ScaledSinusoidalEmbedding
from audiomask.nn.norms import is_causal_norm, make_norm

class MossFormerMasker(nn.Module):
    """MossFormer mask network.

    Args:
        in_chan: N, channels of the encoder representation.
        n_src: C, number of masks.
        d_model: D, width of the attention stack.
        n_layers: R, number of MossFormer blocks.
        group_size: g, chunk length (frames) of the local quadratic attention.
        qk_dim: S, query/key width.
        expansion: hidden width ``2E = D · expansion`` of the value/gate projection.
        rotary_dim: features rotated by the shared rotary embedding (``min(32, S)``).
        conv_kernel_size: depthwise kernel of the FFConvM modules.
        dropout: attention/FFConvM dropout (the authors' 0.1).
        norm: the two sequence norms around the stack: ``"gLN"`` (the authors'
            ``GroupNorm(1, D, eps=1e-8)``), or a causal ``"cLN"``/``"chanLN"``.
        causal: causal attention and convs (see :class:`GatedAttentionUnit`); needs a causal norm.
        shift_tokens: token shift in every block.

    Shapes: ``[B, N, S]`` → masks ``[B, C, N, S]`` (non-negative).
    """

    def __init__(self, in_chan: int, n_src: int = 2, d_model: int = 512, n_layers: int = 24,
                 group_size: int = 256, qk_dim: int = 128, expansion: int = 4, rotary_dim: int = 32,
                 conv_kernel_size: int = 17, dropout: float = 0.1, norm: str = "gLN",
                 causal: bool = False, shift_tokens: bool = True) -> None:
        super().__init__()
        if causal and not is_causal_norm(norm):
            raise ValueError(f"a causal MossFormer needs a causal norm ('cLN' or 'chanLN'), got {norm!r}")
        if rotary_dim > qk_dim:
            raise ValueError(f"rotary_dim ({rotary_dim}) cannot exceed qk_dim ({qk_dim})")
        self.in_chan, self.n_src, self.d_model, self.causal = in_chan, n_src, d_model, causal
        self.input_norm = make_norm(norm, in_chan)
        self.in_conv = nn.Conv1d(in_chan, d_model, 1, bias=False)
        self.pos_enc = ScaledSinusoidalEmbedding(d_model)
        self.rotary = RotaryEmbedding(rotary_dim)
        self.layers = nn.ModuleList(
            GatedAttentionUnit(d_model, group_size, qk_dim, expansion, conv_kernel_size, dropout,
                               causal, shift_tokens)
            for _ in range(n_layers))
        self.layer_norm = nn.LayerNorm(d_model, eps=1e-6)
        self.out_norm = make_norm(norm, d_model)
        self.out_act = nn.PReLU()
        self.out_conv = nn.Conv1d(d_model, n_src * d_model, 1)
        self.gate_tanh = nn.Conv1d(d_model, d_model, 1)
        self.gate_sigmoid = nn.Conv1d(d_model, d_model, 1)
        self.mask_conv = nn.Conv1d(d_model, in_chan, 1, bias=False)

    #: every output frame depends on all (causal: all earlier) input frames
    receptive_field = None

    def layer(self, index: int, h: torch.Tensor, angles: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Layer ``index`` of the stack on ``h [B, S, D]`` (MossFormer2 adds its FSMN here)."""
        return self.layers[index](h, self.rotary, angles)

    def forward(self, rep: torch.Tensor) -> torch.Tensor:
        x = self.in_conv(self.input_norm(rep))  # [B, D, S]
        frames = x.shape[-1]
        x = x + self.pos_enc(frames).transpose(0, 1)
        angles = self.rotary.angles(frames, x.dtype)
        h = x.transpose(1, 2)  # [B, S, D]
        for i in range(len(self.layers)):
            h = self.layer(i, h, angles)
        h = self.out_norm(self.layer_norm(h).transpose(1, 2)) + x
        scores = self.out_conv(self.out_act(h))  # [B, C·D, S]
        scores = scores.reshape(rep.shape[0] * self.n_src, self.d_model, frames)
        gated = torch.tanh(self.gate_tanh(scores)) * torch.sigmoid(self.gate_sigmoid(scores))
        masks = F.relu(self.mask_conv(gated))
        return masks.reshape(rep.shape[0], self.n_src, self.in_chan, frames)
