"""Conv-TasNet: learned conv encoder → TCN masker → transposed-conv decoder.

Y. Luo and N. Mesgarani, "Conv-TasNet: Surpassing Ideal Time–Frequency Magnitude Masking
for Speech Separation", IEEE/ACM TASLP, 2019. Faithful to the authors' code (naplab): the
``"paper"`` preset has exactly 5,050,545 parameters and, given the same weights, the same
output as their ``TasNet`` (and, with ``framing="valid"``, as Asteroid's ``ConvTasNet``).
"""

from __future__ import annotations

from dataclasses import dataclass

from audiomask.filterbanks import ConvDecoder, ConvEncoder
from audiomask.maskers.tcn import TCNMasker
from audiomask.models.base import EncoderMaskerDecoder
from audiomask.models.registry import register_model


@dataclass
class ConvTasNetConfig:
    """Hyper-parameters, named as in the paper's Table I.

    Attributes:
        n_src: C, number of sources.
        sample_rate: Hz.
        n_filters: N, encoder basis functions.
        kernel_size: L, filter length (samples); stride L/2 unless ``stride`` is set.
        stride: encoder hop (samples).
        bn_chan: B, bottleneck channels.
        hid_chan: H, channels in the conv blocks.
        skip_chan: Sc, skip-connection channels (0 disables the skip path).
        conv_kernel_size: P, depthwise kernel size.
        n_blocks: X, blocks per repeat (dilations 1 … 2^(X-1)).
        n_repeats: R.
        norm: ``"gLN"`` (non-causal), ``"cLN"`` (cumulative, causal), ``"chanLN"``.
        causal: left-only padding in the TCN.
        mask_act: mask non-linearity (paper: sigmoid).
        framing: ``"centered"`` (authors' padding) or ``"valid"`` (Asteroid's).
        encoder_activation: ``None`` (paper) or ``"relu"``.
    """

    n_src: int = 2
    sample_rate: int = 8000
    n_filters: int = 512
    kernel_size: int = 16
    stride: int = 8
    bn_chan: int = 128
    hid_chan: int = 512
    skip_chan: int = 128
    conv_kernel_size: int = 3
    n_blocks: int = 8
    n_repeats: int = 3
    norm: str = "gLN"
    causal: bool = False
    mask_act: str = "sigmoid"
    framing: str = "centered"
    encoder_activation: str | None = None


@register_model
class ConvTasNet(EncoderMaskerDecoder):
    """Conv-TasNet. Shapes: ``[batch, T]`` → ``[batch, n_src, T]``.

    Presets: ``"paper"`` (N=512, L=16, B=Sc=128, H=512, P=3, X=8, R=3, 8 kHz, gLN —
    5,050,545 parameters), ``"paper-causal"`` (same with cLN and causal convs),
    ``"small"`` / ``"small-causal"`` (CPU-trainable) and ``"tiny"`` (tests).
    """

    name = "convtasnet"
    config_class = ConvTasNetConfig
    presets = {
        "paper": {},
        "paper-causal": {"norm": "cLN", "causal": True},
        "small": {"n_filters": 128, "bn_chan": 64, "hid_chan": 256, "skip_chan": 64,
                  "n_blocks": 8, "n_repeats": 2},
        "small-causal": {"n_filters": 128, "bn_chan": 64, "hid_chan": 256, "skip_chan": 64,
                         "n_blocks": 8, "n_repeats": 2, "norm": "cLN", "causal": True},
        "tiny": {"n_filters": 32, "bn_chan": 16, "hid_chan": 32, "skip_chan": 16,
                 "n_blocks": 3, "n_repeats": 1},
    }

    def __init__(self, config: ConvTasNetConfig | None = None) -> None:
        c = config or ConvTasNetConfig()
        encoder = ConvEncoder(c.n_filters, c.kernel_size, c.stride, c.framing, c.encoder_activation)
        masker = TCNMasker(c.n_filters, c.n_src, c.bn_chan, c.hid_chan, c.skip_chan,
                           c.conv_kernel_size, c.n_blocks, c.n_repeats, c.norm, c.causal, c.mask_act)
        decoder = ConvDecoder(c.n_filters, c.kernel_size, c.stride, c.framing)
        super().__init__(c, encoder, masker, decoder)
