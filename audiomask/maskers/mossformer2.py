"""MossFormer2 masker: MossFormer blocks interleaved with a gated dilated FSMN recurrent module.

Zhao et al., "MossFormer2: Combining Transformer and RNN-Free Recurrent Network for Enhanced
Time-Domain Monaural Speech Separation", ICASSP 2024. Same mask network as MossFormer
(:class:`~audiomask.maskers.mossformer.MossFormerMasker`); each of the R layers is a
:class:`~audiomask.nn.attention.GatedAttentionUnit` followed by a
:class:`~audiomask.nn.fsmn.GatedFSMNBlock` (the authors' ``MossformerBlock_GFSMN`` in
ClearerVoice-Studio ``models/mossformer2_ss/mossformer2_block.py``).

Extra paper/code symbols: I (FSMN bottleneck ``fsmn_channels``, 256), the memory order
``fsmn_lorder`` (20: kernel 39) and the dense depth ``fsmn_depth`` (2: dilations 1, 2).
"""

from __future__ import annotations

import torch
from torch import nn

from audiomask.maskers.mossformer import MossFormerMasker
from audiomask.nn.fsmn import GatedFSMNBlock


class MossFormer2Masker(MossFormerMasker):
    """MossFormer2 mask network. Arguments as :class:`MossFormerMasker`, plus

    Args:
        fsmn_channels: I, bottleneck width of the recurrent module.
        fsmn_lorder: memory order (kernel ``2·lorder − 1``).
        fsmn_depth: dense dilated layers of the memory block.

    Shapes: ``[B, N, S]`` → masks ``[B, C, N, S]``.
    """

    def __init__(self, in_chan: int, n_src: int = 2, d_model: int = 512, n_layers: int = 24,
                 group_size: int = 256, qk_dim: int = 128, expansion: int = 4, rotary_dim: int = 32,
                 conv_kernel_size: int = 17, dropout: float = 0.1, norm: str = "gLN",
                 causal: bool = False, shift_tokens: bool = True, fsmn_channels: int = 256,
                 fsmn_lorder: int = 20, fsmn_depth: int = 2) -> None:
        super().__init__(in_chan, n_src, d_model, n_layers, group_size, qk_dim, expansion, rotary_dim,
                         conv_kernel_size, dropout, norm, causal, shift_tokens)
        self.fsmn = nn.ModuleList(
            GatedFSMNBlock(d_model, fsmn_channels, fsmn_lorder, fsmn_depth, conv_kernel_size, dropout, causal)
            for _ in range(n_layers))

    def layer(self, index: int, h: torch.Tensor, angles: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return self.fsmn[index](self.layers[index](h, self.rotary, angles))
