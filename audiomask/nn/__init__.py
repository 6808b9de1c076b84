"""Building blocks shared by the maskers."""

from audiomask.nn.norms import (
    ChannelLayerNorm,
    CumulativeLayerNorm,
    GlobalLayerNorm,
    make_norm,
)
from audiomask.nn.attention import GatedAttentionUnit, RotaryEmbedding, ScaleNorm
from audiomask.nn.complex import ComplexConv2d, ComplexNorm
from audiomask.nn.fsmn import GatedFSMNBlock
from audiomask.nn.multiscale import MultiScaleSelectiveAttention
from audiomask.nn.tf_attention import FullAxisAttention

__all__ = ["GlobalLayerNorm", "CumulativeLayerNorm", "ChannelLayerNorm", "make_norm",
           "MultiScaleSelectiveAttention", "FullAxisAttention",
           "GatedAttentionUnit", "RotaryEmbedding", "ScaleNorm", "GatedFSMNBlock",
           "ComplexConv2d", "ComplexNorm"]
