"""Real-valued STFT and inverse STFT, for graphs that cannot hold complex tensors.

ONNX has no complex type and neither PyTorch exporter turns complex tensors into real pairs
reliably, so the exported graphs of STFT models (TIGER, the D3Net echo canceller) compute the
transform as a strided convolution with a windowed DFT basis, and its inverse as a strided
transposed convolution with the windowed inverse basis followed by the division by the summed
squared window that ``torch.istft`` does. Spectra are real tensors ``[B, 2, F, frames]``
(real parts, imaginary parts) — the layout of ``torch.view_as_real(spec).permute(0, 3, 1, 2)``.

The numbers equal :class:`~audiomask.filterbanks.STFTEncoder` /
:class:`~audiomask.filterbanks.ISTFTDecoder` to float32 rounding (a DFT as a matrix product
instead of an FFT); tests compare them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from audiomask.filterbanks import ISTFTDecoder, STFTEncoder


def dft_bases(n_fft: int, window: Tensor) -> tuple[Tensor, Tensor]:
    """The analysis and synthesis kernels ``[2F, 1, n_fft]`` (``F = n_fft//2 + 1``; real rows
    then imaginary rows), windowed by ``window`` (already zero-padded to ``n_fft``).

    Analysis: ``X_k = Σ_t w_t x_t e^{-2πikt/n}``. Synthesis: ``torch.fft.irfft`` of a one-sided
    spectrum times the window — bins 1 … F-2 count twice (their mirror images), the
    imaginary parts of the DC and Nyquist bins are ignored, as ``irfft`` does.
    """
    n_bins = n_fft // 2 + 1
    k = torch.arange(n_bins, dtype=torch.float64).unsqueeze(1)
    t = torch.arange(n_fft, dtype=torch.float64).unsqueeze(0)
    angle = 2 * math.pi * torch.remainder(k * t, n_fft) / n_fft  # remainder keeps the angle exact
    cos, sin = torch.cos(angle), torch.sin(angle)
    w = window.to(torch.float64)
    analysis = torch.cat([cos * w, -sin * w]).unsqueeze(1)
    weight = torch.full((n_bins, 1), 2.0, dtype=torch.float64)
    weight[0] = 1.0
    if n_fft % 2 == 0:
        weight[-1] = 1.0
    synthesis = torch.cat([cos * weight, -sin * weight]) / n_fft * w
    return analysis.float(), synthesis.unsqueeze(1).float()


class RealSTFT(nn.Module):
    """:class:`~audiomask.filterbanks.STFTEncoder` as a strided convolution.

    Shapes: ``[B, T]`` → ``[B, 2, F, T // hop + 1]`` (centred, the encoder's ``pad_mode``; a
    ``"reflect"`` encoder needs ``T > n_fft // 2``, as ``torch.stft`` does).
    """

    def __init__(self, encoder: STFTEncoder) -> None:
        super().__init__()
        self.n_fft, self.hop, self.pad_mode = encoder.n_fft, encoder.hop_length, encoder.pad_mode
        analysis, _ = dft_bases(self.n_fft, encoder.full_window())
        self.register_buffer("basis", analysis, persistent=False)

    def forward(self, wav: Tensor) -> Tensor:
        half = self.n_fft // 2
        padded = F.pad(wav.unsqueeze(1), (half, half), mode=self.pad_mode)
        return self.frames(padded[:, 0])

    def frames(self, padded: Tensor) -> Tensor:
        """Spectra of every full frame of an already padded ``[B, n]``: ``[B, 2, F, frames]``."""
        spec = F.conv1d(padded.unsqueeze(1), self.basis, stride=self.hop)  # [B, 2F, frames]
        return spec.unflatten(1, (2, -1))


class RealISTFT(nn.Module):
    """:class:`~audiomask.filterbanks.ISTFTDecoder` as a strided transposed convolution.

    Shapes: ``[N, 2, F, frames]`` → ``[N, length]``.
    """

    def __init__(self, decoder: ISTFTDecoder) -> None:
        super().__init__()
        self.n_fft, self.hop = decoder.n_fft, decoder.hop_length
        window = decoder.full_window()
        _, synthesis = dft_bases(self.n_fft, window)
        self.register_buffer("basis", synthesis, persistent=False)
        self.register_buffer("window_sq", window.square().view(1, 1, -1), persistent=False)

    def overlap_add(self, spec: Tensor) -> tuple[Tensor, Tensor]:
        """Windowed inverse DFTs of ``spec [N, 2, F, frames]`` overlap-added: ``(wav [N, n],
        env [n])`` with ``n = (frames - 1)·hop + n_fft`` and ``env`` the summed squared window."""
        wav = F.conv_transpose1d(spec.flatten(1, 2), self.basis, stride=self.hop)[:, 0]
        ones = spec.new_ones(1, 1, spec.shape[-1])
        env = F.conv_transpose1d(ones, self.window_sq, stride=self.hop)[0, 0]
        return wav, env

    def forward(self, spec: Tensor, length: int) -> Tensor:
        wav, env = self.overlap_add(spec)
        half = self.n_fft // 2
        wav = normalise(wav, env)[:, half:]
        wav = F.pad(wav, (0, length))  # torch.istft's zeros where no frame reaches
        return wav[:, :length]


def normalise(wav: Tensor, env: Tensor) -> Tensor:
    """``wav / env`` where the summed squared window is non-zero, else 0 (``torch.istft``)."""
    ok = env > 1e-11
    return torch.where(ok, wav / torch.where(ok, env, torch.ones_like(env)), torch.zeros_like(wav))


def complex_mul(a: Tensor, b: Tensor, dim: int) -> Tensor:
    """Complex product of two real-pair tensors whose real/imaginary axis is ``dim``."""
    ar, ai = a.unbind(dim)
    br, bi = b.unbind(dim)
    return torch.stack((ar * br - ai * bi, ar * bi + ai * br), dim)
