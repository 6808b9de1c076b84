"""Encoders and decoders: waveform ⇄ representation with exact inverse framing.

* :mod:`.conv` — the learned 1-D conv basis of TasNet (:class:`ConvEncoder` /
  :class:`ConvDecoder`, the padding rule :class:`Framing`);
* :mod:`.stft` — the STFT (:class:`STFTEncoder` / :class:`ISTFTDecoder`), offline, streaming
  and in the real-valued form exported graphs use (:class:`RealSTFT` / :class:`RealISTFT`).

Every encoder/decoder pair satisfies ``decoder(encoder(x), length=x.shape[-1])`` having the
input's length, for any input length ≥ 1.
"""

from audiomask.filterbanks.conv import FRAMINGS, ConvDecoder, ConvDecoderState, ConvEncoder, Framing
from audiomask.filterbanks.stft import (
    ISTFTDecoder,
    ISTFTStreamState,
    RealISTFT,
    RealSTFT,
    STFTEncoder,
    STFTStreamState,
    complex_mask,
    make_window,
)

__all__ = ["FRAMINGS", "ConvDecoder", "ConvDecoderState", "ConvEncoder", "Framing", "ISTFTDecoder", "ISTFTStreamState", "RealISTFT",
           "RealSTFT", "STFTEncoder", "STFTStreamState", "complex_mask", "make_window"]
