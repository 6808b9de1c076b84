"""Building blocks shared by the maskers."""

from audiomask.nn.norms import (
    ChannelLayerNorm,
    CumulativeLayerNorm,
    GlobalLayerNorm,
    make_norm,
)

__all__ = ["GlobalLayerNorm", "CumulativeLayerNorm", "ChannelLayerNorm", "make_norm"]
