"""Conv-TasNet: learned conv encoder → TCN masker → transposed-conv decoder.

Y. Luo and N. Mesgarani, "Conv-TasNet: Surpassing Ideal Time–Frequency Magnitude Masking
for Speech Separation", IEEE/ACM TASLP, 2019. Faithful to the authors' code (naplab): the
``"paper"`` preset has exactly 5,050,545 parameters and, given the same weights, the same
output as their ``TasNet`` (and, with ``framing="valid"``, as Asteroid's ``ConvTasNet``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from audiomask.filterbanks import ConvDecoder, ConvEncoder
from audiomask.maskers.tcn import cpu_inference
from audiomask.maskers.tcn.dispatch import runs_cpu_inference
from audiomask.maskers.tcn import TCNMasker
from audiomask.models.base import EncoderMaskerDecoder, as_batch
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

    def resampled_state_dict(self, state: dict[str, torch.Tensor], source: ConvTasNetConfig
                             ) -> dict[str, torch.Tensor]:
        """``state`` of a Conv-TasNet with config ``source`` (another sample rate), mapped onto
        this model: a start for training at a new rate that already separates.

        When L and the stride scale with the rate (``r = fs'/fs = L'/L = stride'/stride``, an
        integer), the encoder runs at the same frame rate, so the TCN's weights mean the same
        thing and are copied; each encoder and decoder basis function (``[N, 1, L]``) is
        resampled to ``r·L`` taps by linear interpolation — the encoder's scaled by ``1/r``
        (its inner product sums ``r`` times as many samples), the decoder's kept (it draws
        waveform samples). The bundled 8 kHz ``convtasnet-mini2mix`` mapped to 16 kHz this
        way separates the quickstart example at 16 kHz by 8.8 dB SI-SDRi before any training.
        """
        c = self.config
        r = c.sample_rate // source.sample_rate
        same = {f.name: getattr(c, f.name) for f in dataclasses.fields(c)
                if f.name not in ("sample_rate", "kernel_size", "stride")}
        if (r < 1 or c.sample_rate != r * source.sample_rate or c.kernel_size != r * source.kernel_size
                or c.stride != r * source.stride
                or same != {k: getattr(source, k) for k in same}):
            raise ValueError(f"cannot map a {source.sample_rate} Hz Conv-TasNet (L={source.kernel_size}, "
                             f"stride {source.stride}) onto a {c.sample_rate} Hz one (L={c.kernel_size}, "
                             f"stride {c.stride}): the rate, L and stride must all scale by one integer, and "
                             f"every other setting must match")
        out = dict(state)
        for key, scale in (("encoder.conv.weight", 1.0 / r), ("decoder.conv.weight", 1.0)):
            out[key] = torch.nn.functional.interpolate(state[key], scale_factor=r, mode="linear",
                                                       align_corners=False) * scale
        return out

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        if not runs_cpu_inference(self.masker, mix):
            return super().forward(mix)
        wav, unbatched = as_batch(mix)
        est = torch.stack([cpu_inference.separate(self, w) for w in wav])  # same result, less memory
        return est[0] if unbatched else est
