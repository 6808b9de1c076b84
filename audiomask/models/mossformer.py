"""MossFormer and MossFormer2: conv encoder (+ReLU) → MossFormer(2) masker → transposed-conv decoder.

* MossFormer — Zhao & Ma, ICASSP 2023. Faithful to the authors' ModelScope code
  (``damo/speech_mossformer_separation_temporal_8k``): the ``"paper"`` preset has exactly
  42,101,834 trainable parameters and the ModelScope state_dict loads through
  ``audiomask.interop.convert("modelscope-mossformer", sd)``.
* MossFormer2 — Zhao et al., ICASSP 2024. Faithful to ClearerVoice-Studio's
  ``MossFormer2_SS_16K``: the ``"paper"`` preset (16 kHz) has exactly 55,735,394 trainable
  parameters and loads through ``convert("clearervoice-mossformer2", sd)``.

Framing is the authors': ``Conv1d(1 → N, L, stride L/2)`` without padding, the decoder output
zero-padded (or cut) to the input length — audiomask's ``"valid"`` framing.

Causal variants (``causal=True`` with a causal norm, presets ``*-causal``): the authors'
causal attention (chunk-causal quadratic part, linear attention over previous chunks by an
exclusive cumulative sum), left-padded depthwise convs, cumulative norms instead of the global
ones and, in MossFormer2, a left-only FSMN memory with a cumulative InstanceNorm. An output
sample then depends on input samples up to ``L - 1`` ahead (the encoder window) and no further.
What cannot be kept causal is the non-causal models' *global* context itself (the linear
attention normalised by the whole length, gLN, InstanceNorm): the causal variants replace it,
so they are different models, trained separately (same parameter shapes and counts). They run
offline or chunked; exact block-wise streaming (``model.stream()``) is not implemented for
them.
"""

from __future__ import annotations

from dataclasses import dataclass

from audiomask.filterbanks import ConvDecoder, ConvEncoder
from audiomask.maskers.mossformer import MossFormerMasker
from audiomask.maskers.mossformer2 import MossFormer2Masker
from audiomask.models.base import EncoderMaskerDecoder
from audiomask.models.registry import register_model


@dataclass
class MossFormerConfig:
    """Hyper-parameters of MossFormer (names of the paper / the authors' code in brackets).

    Attributes:
        n_src: C, number of sources (``num_spks``).
        sample_rate: Hz.
        n_filters: N, encoder basis functions (``in_channels``).
        kernel_size: L, encoder filter length (samples).
        stride: encoder hop (samples), L/2.
        d_model: D, width of the attention stack (``out_channels`` / ``d_model``).
        n_layers: R, MossFormer blocks (``num_blocks``).
        group_size: g, chunk length of the local quadratic attention, frames.
        qk_dim: S, query/key width (``query_key_dim``).
        expansion: value/gate projection width ``2E = D · expansion`` (``expansion_factor``).
        rotary_dim: features under the shared rotary embedding (``min(32, S)``).
        conv_kernel_size: depthwise kernel of the FFConvM conv modules.
        dropout: attention and FFConvM dropout (``attn_dropout``).
        norm: sequence norm before and after the stack: ``"gLN"`` (the authors' ``"ln"``,
            GroupNorm with one group), ``"cLN"`` (cumulative) or ``"chanLN"``.
        causal: causal attention/convs; requires a causal norm.
        shift_tokens: token shift in each block.
    """

    n_src: int = 2
    sample_rate: int = 8000
    n_filters: int = 512
    kernel_size: int = 16
    stride: int = 8
    d_model: int = 512
    n_layers: int = 24
    group_size: int = 256
    qk_dim: int = 128
    expansion: int = 4
    rotary_dim: int = 32
    conv_kernel_size: int = 17
    dropout: float = 0.1
    norm: str = "gLN"
    causal: bool = False
    shift_tokens: bool = True


@dataclass
class MossFormer2Config(MossFormerConfig):
    """MossFormer's fields (defaults of ClearerVoice ``MossFormer2_SS_16K``, 16 kHz) plus the
    recurrent module's.

    Attributes:
        fsmn_channels: I, bottleneck width of the gated FSMN block (``inner_channels``).
        fsmn_lorder: FSMN memory order; kernel ``2·lorder − 1`` (``lorder``).
        fsmn_depth: dense dilated memory layers, dilations ``1, 2, …, 2^(depth-1)``.
    """

    sample_rate: int = 16000
    fsmn_channels: int = 256
    fsmn_lorder: int = 20
    fsmn_depth: int = 2


_SMALL = {"n_filters": 256, "d_model": 128, "n_layers": 4, "qk_dim": 64, "group_size": 128}
_CAUSAL = {"norm": "cLN", "causal": True}


def _masker_args(c: MossFormerConfig) -> dict:
    return dict(in_chan=c.n_filters, n_src=c.n_src, d_model=c.d_model, n_layers=c.n_layers,
                group_size=c.group_size, qk_dim=c.qk_dim, expansion=c.expansion,
                rotary_dim=c.rotary_dim, conv_kernel_size=c.conv_kernel_size, dropout=c.dropout,
                norm=c.norm, causal=c.causal, shift_tokens=c.shift_tokens)


@register_model
class MossFormer(EncoderMaskerDecoder):
    """MossFormer. Shapes: ``[batch, T]`` → ``[batch, n_src, T]``.

    Presets: ``"paper"`` (8 kHz WSJ0-2mix: N=D=512, L=16, R=24, g=256, S=128, expansion 4 —
    42,101,834 parameters), ``"paper-causal"``, ``"small"`` / ``"small-causal"``
    (CPU-trainable: N=256, D=128, R=4, S=64, g=128 — 619,534 parameters).
    """

    name = "mossformer"
    config_class = MossFormerConfig
    presets = {
        "paper": {},
        "paper-causal": dict(_CAUSAL),
        "small": dict(_SMALL),
        "small-causal": {**_SMALL, **_CAUSAL},
    }

    def __init__(self, config: MossFormerConfig | None = None) -> None:
        c = config or self.config_class()
        encoder = ConvEncoder(c.n_filters, c.kernel_size, c.stride, "valid", "relu")
        masker = self._make_masker(c)
        decoder = ConvDecoder(c.n_filters, c.kernel_size, c.stride, "valid")
        super().__init__(c, encoder, masker, decoder)

    def _make_masker(self, c: MossFormerConfig) -> MossFormerMasker:
        return MossFormerMasker(**_masker_args(c))


@register_model
class MossFormer2(MossFormer):
    """MossFormer2. Shapes: ``[batch, T]`` → ``[batch, n_src, T]``.

    Presets: ``"paper"`` (16 kHz, ClearerVoice ``MossFormer2_SS_16K``: N=D=512, L=16, R=24,
    I=256 — 55,735,394 parameters), ``"paper-8k"`` (the same network at 8 kHz, as trained on
    WSJ0-2mix in the paper and ClearerVoice ``MossFormer2_SS_8K``), ``"paper-causal"``,
    ``"small"`` / ``"small-causal"`` (8 kHz, CPU-trainable: N=256, D=128, R=4, S=64, g=128,
    I=64 — 794,386 parameters).
    """

    name = "mossformer2"
    config_class = MossFormer2Config
    presets = {
        "paper": {},
        "paper-8k": {"sample_rate": 8000},
        "paper-causal": dict(_CAUSAL),
        "small": {**_SMALL, "fsmn_channels": 64, "sample_rate": 8000},
        "small-causal": {**_SMALL, "fsmn_channels": 64, "sample_rate": 8000, **_CAUSAL},
    }

    def _make_masker(self, c: MossFormer2Config) -> MossFormer2Masker:
        return MossFormer2Masker(**_masker_args(c), fsmn_channels=c.fsmn_channels,
                                 fsmn_lorder=c.fsmn_lorder, fsmn_depth=c.fsmn_depth)
