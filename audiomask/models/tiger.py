"""TIGER: STFT encoder → band-split, iterated FFI masker → iSTFT decoder.

M. Xu, K. Li, G. Chen and X. Hu, "TIGER: Time-frequency Interleaved Gain Extraction and
Reconstruction for Efficient Speech Separation", ICLR 2025. Faithful to the authors' look2hear
code (``models/tiger.py`` with ``configs/tiger-large.yml`` / ``tiger-small.yml``): both presets
have exactly 821,932 parameters at 16 kHz (the FFI block's weights are shared by all
iterations, so the iteration count does not change the size), and released look2hear
checkpoints load with ``audiomask.interop.convert("look2hear-tiger", ...)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from audiomask.filterbanks import ISTFTDecoder, STFTEncoder
from audiomask.maskers.tiger import TIGERMasker, band_widths
from audiomask.models.base import EncoderMaskerDecoder
from audiomask.models.registry import register_model


@dataclass
class TIGERConfig:
    """Hyper-parameters (authors' ``audionet_config`` names in brackets).

    Attributes:
        n_src: C, number of sources [``num_sources``].
        sample_rate: Hz; sets the STFT size when ``win``/``hop`` are not given and the
            sub-band layout (:func:`audiomask.maskers.tiger.band_widths`: 67 bands at 16 kHz,
            59 at 8 kHz).
        win: STFT size = periodic Hann window length in samples [``win``]; ``None`` → 40 ms
            (640 at 16 kHz, 320 at 8 kHz).
        hop: STFT hop in samples [``stride``]; ``None`` → ``win // 4`` (10 ms).
        feature_dim: N, channels of every sub-band feature [``out_channels``].
        hidden_dim: channels inside the multi-scale selective attention blocks [``in_channels``].
        depth: resolutions of the multi-scale blocks [``upsampling_depth``].
        n_iter: how many times the one FFI block is applied (shared weights) [``num_blocks``].
        n_heads: attention heads in the full-frequency / full-frame attention [``att_n_head``].
        qk_dim: E, query/key channels per head [``att_hid_chan``].
        dropout: dropout in the multi-scale blocks' global MLP (0.1 in the authors' code).
    """

    n_src: int = 2
    sample_rate: int = 16000
    win: int | None = None
    hop: int | None = None
    feature_dim: int = 128
    hidden_dim: int = 256
    depth: int = 5
    n_iter: int = 8
    n_heads: int = 4
    qk_dim: int = 4
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.win is None:
            self.win = round(0.04 * self.sample_rate)
        if self.hop is None:
            self.hop = self.win // 4
        if not 0 < self.hop <= self.win:
            raise ValueError(f"TIGER: hop ({self.hop}) must be in (0, win={self.win}]")


@register_model
class TIGER(EncoderMaskerDecoder):
    """TIGER. Shapes: ``[batch, T]`` → ``[batch, n_src, T]``.

    Presets (16 kHz, STFT 640/160, N=128, MSA channels 256, depth 5, 4 heads, E=4):
    ``"large"`` (8 FFI iterations) and ``"small"`` (4), both 821,932 parameters; ``"tiny"``
    (N=16, 32 MSA channels, 2 iterations) for tests. At 8 kHz (``sample_rate=8000``) the
    STFT is 320/80 and the masker has 59 sub-bands (696,100 parameters).
    """

    name = "tiger"
    config_class = TIGERConfig
    presets = {
        "large": {"n_iter": 8},
        "small": {"n_iter": 4},
        "tiny": {"feature_dim": 16, "hidden_dim": 32, "n_iter": 2},
    }

    def __init__(self, config: TIGERConfig | None = None) -> None:
        c = config or TIGERConfig()
        encoder = STFTEncoder(c.win, c.hop, window="hann")
        masker = TIGERMasker(band_widths(c.sample_rate, c.win), c.n_src, c.feature_dim,
                             c.hidden_dim, c.depth, c.n_iter, c.n_heads, c.qk_dim, c.dropout)
        decoder = ISTFTDecoder.like(encoder)
        super().__init__(c, encoder, masker, decoder)
