"""Encoders and decoders: waveform ⇄ representation with exact inverse framing.

Every encoder/decoder pair here satisfies ``decoder(encoder(x), length=x.shape[-1])`` having
the input's length, for any input length ≥ 1.

* :class:`ConvEncoder` / :class:`ConvDecoder` — the learned 1-D conv basis of TasNet
  (``N`` filters of length ``L``, hop ``L/2``).
* :class:`STFTEncoder` / :class:`ISTFTDecoder` — ``torch.stft``/``torch.istft``; the
  representation is a complex tensor, masked with magnitude, real/imaginary or polar masks
  (:func:`complex_mask`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FRAMINGS = ("centered", "valid")


class Framing:
    """How a strided conv encoder pads a waveform of ``length`` samples, and how to undo it.

    ``"centered"`` (the Conv-TasNet authors' ``pad_signal``): ``stride`` zeros on both sides
    plus ``rest = L - (stride + length % L) % L`` zeros on the right, so every sample is seen
    by ``L / stride`` frames. ``"valid"`` (Asteroid): no padding (right-padded to one frame if
    shorter than ``L``); the decoder output is cut or zero-padded to ``length``.
    """

    def __init__(self, kernel_size: int, stride: int, mode: str = "centered") -> None:
        if mode not in FRAMINGS:
            raise ValueError(f"unknown framing {mode!r}; choose one of {FRAMINGS}")
        if mode == "centered" and kernel_size % stride:
            raise ValueError(
                f"centered framing needs kernel_size ({kernel_size}) divisible by stride ({stride})"
            )
        self.kernel_size, self.stride, self.mode = kernel_size, stride, mode

    def pads(self, length: int) -> tuple[int, int]:
        """Zeros to add ``(left, right)`` to a waveform of ``length`` samples."""
        L, S = self.kernel_size, self.stride
        if self.mode == "valid":
            return 0, max(0, L - length)
        rest = L - (S + length % L) % L
        return S, rest + S

    def n_frames(self, length: int) -> int:
        left, right = self.pads(length)
        return (length + left + right - self.kernel_size) // self.stride + 1


class ConvEncoder(nn.Module):
    """Learned analysis filterbank (TasNet encoder): ``Conv1d(1 → N, kernel L, stride S)``.

    Args:
        n_filters: N, number of basis functions.
        kernel_size: L, filter length in samples.
        stride: hop between frames (default ``L // 2``).
        framing: ``"centered"`` or ``"valid"``, see :class:`Framing`.
        activation: ``None`` (Conv-TasNet) or ``"relu"`` (MossFormer, the original TasNet).

    Shapes: ``[B, T]`` → ``[B, N, frames]``.
    """

    def __init__(
        self,
        n_filters: int,
        kernel_size: int,
        stride: int | None = None,
        framing: str = "centered",
        activation: str | None = None,
    ) -> None:
        super().__init__()
        self.n_filters, self.kernel_size = n_filters, kernel_size
        self.stride = stride or kernel_size // 2
        self.framing = Framing(kernel_size, self.stride, framing)
        self.conv = nn.Conv1d(1, n_filters, kernel_size, stride=self.stride, bias=False)
        if activation not in (None, "relu"):
            raise ValueError(f"unknown encoder activation {activation!r}; use None or 'relu'")
        self.activation = activation

    @property
    def hop(self) -> int:
        return self.stride

    @property
    def win(self) -> int:
        return self.kernel_size

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        left, right = self.framing.pads(wav.shape[-1])
        return self._frames(F.pad(wav, (left, right)))

    def _frames(self, padded: torch.Tensor) -> torch.Tensor:
        rep = self.conv(padded.unsqueeze(1))
        return F.relu(rep) if self.activation == "relu" else rep

    # -- streaming -----------------------------------------------------------------------
    def initial_state(self, batch: int, device: torch.device | None = None) -> torch.Tensor:
        """Samples not yet framed ``[B, pending]``; starts as the offline left padding."""
        left = self.framing.pads(0)[0] if self.framing.mode == "centered" else 0
        return torch.zeros(batch, left, device=device)

    def step(self, wav: torch.Tensor, pending: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames completed by the new samples ``wav [B, n]``: ``[B, N, F]`` and the samples
        still pending (fewer than ``L``, plus the ``L - S`` the next frame shares)."""
        x = torch.cat([pending, wav], dim=-1)
        n_frames = max(0, (x.shape[-1] - self.kernel_size) // self.stride + 1)
        if n_frames == 0:
            return x.new_zeros(x.shape[0], self.n_filters, 0), x
        # a few frames: one matmul of the framed samples [B, F, L] with the basis [N, L]
        rep = F.linear(x.unfold(-1, self.kernel_size, self.stride), self.conv.weight[:, 0]).transpose(1, 2)
        rep = F.relu(rep) if self.activation == "relu" else rep
        return rep, x[..., n_frames * self.stride :]


class ConvDecoder(nn.Module):
    """Learned synthesis filterbank: ``ConvTranspose1d(N → 1, kernel L, stride S)``, overlap-add.

    Shapes: ``[..., N, frames]`` → ``[..., length]``; trims exactly the encoder's padding.
    """

    def __init__(self, n_filters: int, kernel_size: int, stride: int | None = None,
                 framing: str = "centered") -> None:
        super().__init__()
        self.n_filters, self.kernel_size = n_filters, kernel_size
        self.stride = stride or kernel_size // 2
        self.framing = Framing(kernel_size, self.stride, framing)
        self.conv = nn.ConvTranspose1d(n_filters, 1, kernel_size, stride=self.stride, bias=False)

    def forward(self, rep: torch.Tensor, length: int) -> torch.Tensor:
        lead = rep.shape[:-2]
        wav = self.conv(rep.reshape(-1, *rep.shape[-2:])).squeeze(1)
        left = self.framing.pads(length)[0]
        wav = wav[..., left : left + length]
        if wav.shape[-1] < length:  # "valid" framing drops the incomplete last frame
            wav = F.pad(wav, (0, length - wav.shape[-1]))
        return wav.reshape(*lead, length)

    # -- streaming -----------------------------------------------------------------------
    def initial_state(self, lead: tuple[int, ...], device: torch.device | None = None) -> torch.Tensor:
        """Overlap-add tail ``[*lead, L - S]``: the part of the last frames that later frames
        still add to."""
        return torch.zeros(*lead, self.kernel_size - self.stride, device=device)

    def step(self, rep: torch.Tensor, tail: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Overlap-add the next frames ``rep [..., N, F]``: returns the ``F·S`` samples that are
        now final and the new tail."""
        n_frames = rep.shape[-1]
        if n_frames == 0:
            return tail[..., :0], tail
        lead, length = rep.shape[:-2], (n_frames - 1) * self.stride + self.kernel_size
        # a few frames: one matmul [.., F, N] @ [N, L] and an overlap-add (fold) of the frames
        frames = torch.matmul(rep.reshape(-1, *rep.shape[-2:]).transpose(1, 2), self.conv.weight[:, 0])
        wav = F.fold(frames.transpose(1, 2), (1, length), (1, self.kernel_size), stride=(1, self.stride))
        wav = wav.reshape(*lead, length)
        wav = torch.cat([wav[..., : tail.shape[-1]] + tail, wav[..., tail.shape[-1] :]], dim=-1)
        done = n_frames * self.stride
        return wav[..., :done], wav[..., done:]


class STFTEncoder(nn.Module):
    """Centred short-time Fourier transform.

    Shapes: ``[..., T]`` → complex ``[..., n_fft//2+1, frames]`` with ``frames = T // hop + 1``.

    Args:
        n_fft: FFT size (and window length unless ``win_length`` is given).
        hop_length: hop in samples.
        win_length: window length (default ``n_fft``).
        window: ``"hann"`` (periodic) or ``"sqrt_hann"``.
        pad_mode: how the ``n_fft // 2`` samples beyond each end are filled; ``"reflect"``
            falls back to zeros for inputs too short to reflect (``T <= n_fft // 2``).
    """

    def __init__(self, n_fft: int, hop_length: int, win_length: int | None = None,
                 window: str = "hann", pad_mode: str = "reflect") -> None:
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        self.win_length = win_length or n_fft
        self.window_name, self.pad_mode = window, pad_mode
        self.register_buffer("window", make_window(window, self.win_length), persistent=False)

    @property
    def hop(self) -> int:
        return self.hop_length

    @property
    def win(self) -> int:
        return self.win_length

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        lead, length = wav.shape[:-1], wav.shape[-1]
        pad_mode = self.pad_mode if length > self.n_fft // 2 else "constant"
        spec = torch.stft(wav.reshape(-1, length), self.n_fft, self.hop_length, self.win_length,
                          self.window, center=True, pad_mode=pad_mode, return_complex=True)
        return spec.reshape(*lead, *spec.shape[-2:])


class ISTFTDecoder(nn.Module):
    """Inverse of :class:`STFTEncoder` (windowed overlap-add, divided by the summed window²).

    Shapes: complex ``[..., n_fft//2+1, frames]`` → ``[..., length]``.
    """

    def __init__(self, n_fft: int, hop_length: int, win_length: int | None = None,
                 window: str = "hann") -> None:
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        self.win_length = win_length or n_fft
        self.register_buffer("window", make_window(window, self.win_length), persistent=False)

    @classmethod
    def like(cls, encoder: STFTEncoder) -> "ISTFTDecoder":
        """The decoder that inverts ``encoder``."""
        return cls(encoder.n_fft, encoder.hop_length, encoder.win_length, encoder.window_name)

    def forward(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        lead = spec.shape[:-2]
        wav = torch.istft(spec.reshape(-1, *spec.shape[-2:]), self.n_fft, self.hop_length,
                          self.win_length, self.window, center=True, length=length)
        return wav.reshape(*lead, length)


def complex_mask(mask: torch.Tensor, kind: str = "real_imag") -> torch.Tensor:
    """Turn a masker's real-valued output into the mask to multiply with a complex STFT.

    * ``"magnitude"``: ``mask [..., F, T]`` ≥ 0 scales the magnitude and keeps the mixture phase.
    * ``"real_imag"``: ``mask [..., 2, F, T]`` holds the real and imaginary parts of a complex
      mask (complex ratio mask).
    * ``"polar"``: ``mask [..., 2, F, T]`` holds magnitude and phase (radians).
    """
    if kind == "magnitude":
        return mask
    if mask.shape[-3] != 2:
        raise ValueError(f"{kind} masks need a size-2 axis before [F, T], got shape {tuple(mask.shape)}")
    first, second = mask.unbind(-3)
    if kind == "real_imag":
        return torch.complex(first, second)
    if kind == "polar":
        return torch.polar(first, second)
    raise ValueError(f"unknown mask kind {kind!r}; use 'magnitude', 'real_imag' or 'polar'")


def make_window(name: str, length: int) -> torch.Tensor:
    """Periodic analysis window: ``"hann"`` or ``"sqrt_hann"``."""
    if name == "hann":
        return torch.hann_window(length, periodic=True)
    if name == "sqrt_hann":
        return torch.hann_window(length, periodic=True).sqrt()
    raise ValueError(f"unknown window {name!r}; use 'hann' or 'sqrt_hann'")
