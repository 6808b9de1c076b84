"""The short-time Fourier transform, in one place: offline, streaming and real-valued (export).

* :class:`STFTEncoder` / :class:`ISTFTDecoder` — ``torch.stft``/``torch.istft`` (centred,
  periodic window); the representation is a complex ``[..., F, frames]`` tensor
  (``F = n_fft//2 + 1``), masked with magnitude, real/imaginary or polar masks
  (:func:`complex_mask`). ``decoder(encoder(x), length=x.shape[-1])`` has the input's length.
* Streaming: ``init_state`` / ``step`` / ``flush`` on both, frame by frame as samples
  arrive (:class:`STFTStreamState`, :class:`ISTFTStreamState`), equal to the offline
  transform's frames and samples.
* Real-valued: ONNX has no complex type and neither PyTorch exporter turns complex tensors
  into real pairs reliably, so exported graphs of STFT models (TIGER, the D3Net echo
  canceller) use :class:`RealSTFT` (a strided convolution with the windowed DFT basis) and
  :class:`RealISTFT` (a strided transposed convolution with the windowed inverse basis, then
  the division by the summed squared window that ``torch.istft`` does). Spectra are real
  ``[B, 2, F, frames]`` (real parts, imaginary parts — ``torch.view_as_real(spec).permute(0, 3,
  1, 2)``), equal to the complex forms to float32 rounding (a DFT as a matrix product instead
  of an FFT); tests compare them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


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

    # -- streaming -----------------------------------------------------------------------
    # The offline transform is centred: frame f covers samples [f·hop - n_fft/2, f·hop + n_fft/2)
    # of the signal padded by n_fft/2 on each side. A stream therefore emits frame f once the
    # samples up to f·hop + n_fft/2 - 1 have arrived (the STFT's look-ahead), builds the left
    # padding as soon as it is known (at once for zeros; after n_fft/2 + 1 samples for
    # "reflect") and the right padding in :meth:`flush`, when the length is known.
    def init_state(self, batch: int, device: torch.device | None = None) -> "STFTStreamState":
        """A fresh stream of ``batch`` signals (see :class:`STFTStreamState`)."""
        return STFTStreamState(torch.zeros(batch, 0, device=device))

    def step(self, wav: torch.Tensor, state: "STFTStreamState") -> tuple[torch.Tensor, "STFTStreamState"]:
        """Frames completed by the next samples ``wav [B, n]``: complex ``[B, n_bins, F]`` (F ≥ 0)
        equal to the corresponding frames of :meth:`forward` over the whole signal."""
        if wav.dim() != 2 or wav.shape[0] != state.buf.shape[0]:
            raise ValueError(f"expected a block [{state.buf.shape[0]}, n], got shape {tuple(wav.shape)}")
        state.buf = torch.cat([state.buf, wav.to(state.buf)], dim=-1)
        state.received += wav.shape[-1]
        half = self.n_fft // 2
        if not state.started and (self.pad_mode == "constant" or state.received > half):
            self._start(state, reflect=self.pad_mode == "reflect")
        if not state.started:
            return self._no_frames(state), state
        return self._frames(state), state

    def flush(self, state: "STFTStreamState", length: int | None = None) -> tuple[torch.Tensor, "STFTStreamState"]:
        """The last frames, over the right padding the offline pass adds at the end; after
        this the stream has given exactly ``received // hop + 1`` frames. (``length``, the
        stream's total, is part of the streaming protocol; the state counts it already.)"""
        half, length = self.n_fft // 2, state.received
        reflect = self.pad_mode == "reflect" and length > half  # forward() falls back to zeros
        if not state.started:
            self._start(state, reflect=reflect)
        if reflect:
            right = state.buf[:, -half - 1 : -1].flip(-1)
        else:
            right = state.buf.new_zeros(state.buf.shape[0], half)
        state.buf = torch.cat([state.buf, right], dim=-1)
        spec = self._frames(state, final=True)
        expected = length // self.hop_length + 1
        if state.frames != expected:  # an internal invariant, not a user error
            raise RuntimeError(f"STFT stream gave {state.frames} frames for {length} samples, expected {expected}")
        return spec, state

    def _start(self, state: "STFTStreamState", reflect: bool) -> None:
        half = self.n_fft // 2
        if reflect:
            left = state.buf[:, 1 : half + 1].flip(-1)
        else:
            left = state.buf.new_zeros(state.buf.shape[0], half)
        state.buf = torch.cat([left, state.buf], dim=-1)
        state.started = True

    def _no_frames(self, state: "STFTStreamState") -> torch.Tensor:
        dtype = torch.complex128 if state.buf.dtype == torch.float64 else torch.complex64
        return torch.zeros(state.buf.shape[0], self.n_bins, 0, dtype=dtype, device=state.buf.device)

    def _frames(self, state: "STFTStreamState", final: bool = False) -> torch.Tensor:
        """Every frame that fits in the buffer; then drops the samples no later frame needs
        (keeping, until the end, the last ``n_fft/2 + 1`` that a reflected right edge needs)."""
        n, hop = self.n_fft, self.hop_length
        offset = state.frames * hop - state.start  # where the next frame begins in the buffer
        available = state.buf.shape[-1] - offset
        count = (available - n) // hop + 1 if available >= n else 0
        if count <= 0:
            return self._no_frames(state)
        frames = state.buf[:, offset:].unfold(-1, n, hop)[:, :count] * self.full_window()
        spec = torch.fft.rfft(frames, dim=-1).transpose(1, 2)
        state.frames += count
        keep_from = state.buf.shape[-1] if final else min(
            state.frames * hop - state.start, state.buf.shape[-1] - (n // 2 + 1))
        if keep_from > 0:
            state.buf = state.buf[:, keep_from:]
            state.start += keep_from
        return spec

    def full_window(self) -> torch.Tensor:
        """The analysis window zero-padded (centred) to ``n_fft``, as ``torch.stft`` uses it."""
        return centred_window(self.window, self.n_fft)


@dataclass
class STFTStreamState:
    """What a streamed :class:`STFTEncoder` carries between blocks.

    Attributes:
        buf: ``[B, n]`` samples of the padded signal from padded position ``start`` on (before
            the left padding is known: the raw samples received so far).
        received: samples received.
        started: whether the left padding has been put in front of ``buf``.
        frames: frames emitted so far (the next frame starts at padded position ``frames·hop``).
        start: padded position of ``buf[:, 0]``.
    """

    buf: torch.Tensor
    received: int = 0
    started: bool = False
    frames: int = 0
    start: int = 0


@dataclass
class ISTFTStreamState:
    """What a streamed :class:`ISTFTDecoder` carries between blocks.

    Attributes:
        ola: ``[*lead, n_fft - hop]`` overlap-added samples that later frames still add to.
        env: ``[n_fft - hop]`` the summed squared window over the same samples.
        drop: padded samples still to drop at the start (the centred STFT's ``n_fft/2``).
        emitted: output samples given so far.
    """

    ola: torch.Tensor
    env: torch.Tensor
    drop: int
    emitted: int = 0


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

    # -- streaming -----------------------------------------------------------------------
    # torch.istft overlap-adds the windowed inverse FFTs of all frames, divides every sample by
    # the summed squared window of the frames that cover it, and drops the n_fft/2 samples of
    # left padding. A sample is final once no later frame covers it: after frame f, every
    # sample before (f + 1)·hop. The stream keeps the rest (n_fft - hop samples) with its
    # window sum, so each block's samples equal the offline ones.
    def init_state(self, lead: tuple[int, ...], device: torch.device | None = None) -> ISTFTStreamState:
        """A fresh stream of signals with leading shape ``lead`` (e.g. ``(batch, n_src)``)."""
        tail = self.n_fft - self.hop_length
        return ISTFTStreamState(torch.zeros(*lead, tail, device=device), torch.zeros(tail, device=device),
                                self.n_fft // 2)

    def step(self, spec: torch.Tensor, state: ISTFTStreamState) -> tuple[torch.Tensor, ISTFTStreamState]:
        """Overlap-add the next frames ``spec [*lead, n_bins, F]``: the samples that are now
        final (``F·hop`` of them, fewer at the start) and the new state."""
        n, hop, n_frames = self.n_fft, self.hop_length, spec.shape[-1]
        if n_frames == 0:
            return state.ola[..., :0], state
        lead = spec.shape[:-2]
        frames = torch.fft.irfft(spec.transpose(-1, -2), n=n, dim=-1) * self.full_window()
        length = (n_frames - 1) * hop + n
        wav = F.fold(frames.reshape(-1, n_frames, n).transpose(1, 2), (1, length), (1, n),
                     stride=(1, hop)).reshape(*lead, length)
        square = self.full_window().square().unsqueeze(-1).expand(n, n_frames)
        env = F.fold(square.unsqueeze(0), (1, length), (1, n), stride=(1, hop)).reshape(length)
        tail = state.ola.shape[-1]
        wav = torch.cat([wav[..., :tail] + state.ola, wav[..., tail:]], dim=-1)
        env = torch.cat([env[:tail] + state.env, env[tail:]])
        done = n_frames * hop
        out = normalise(wav[..., :done], env[:done])
        state.ola, state.env = wav[..., done:], env[done:]
        if state.drop:
            k = min(state.drop, out.shape[-1])
            out, state.drop = out[..., k:], state.drop - k
        state.emitted += out.shape[-1]
        return out, state

    def flush(self, state: ISTFTStreamState, length: int) -> tuple[torch.Tensor, ISTFTStreamState]:
        """The rest of a signal of ``length`` samples in all: the samples the last frames
        covered (zeros where no frame did, as ``torch.istft`` pads), cut at ``length``."""
        out = normalise(state.ola, state.env)
        if state.drop:
            k = min(state.drop, out.shape[-1])
            out, state.drop = out[..., k:], state.drop - k
        missing = max(0, length - state.emitted)
        out = F.pad(out, (0, max(0, missing - out.shape[-1])))[..., :missing]
        state.emitted += out.shape[-1]
        state.ola, state.env = state.ola[..., :0], state.env[:0]
        return out, state

    def full_window(self) -> torch.Tensor:
        """The synthesis window zero-padded (centred) to ``n_fft``, as ``torch.istft`` uses it."""
        return centred_window(self.window, self.n_fft)


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


def centred_window(window: Tensor, n_fft: int) -> Tensor:
    """``window`` zero-padded on both sides (centred) to ``n_fft`` samples, as ``torch.stft`` pads it."""
    left = (n_fft - window.shape[-1]) // 2
    return F.pad(window, (left, n_fft - window.shape[-1] - left))


def make_window(name: str, length: int) -> torch.Tensor:
    """Periodic analysis window: ``"hann"`` or ``"sqrt_hann"``."""
    if name == "hann":
        return torch.hann_window(length, periodic=True)
    if name == "sqrt_hann":
        return torch.hann_window(length, periodic=True).sqrt()
    raise ValueError(f"unknown window {name!r}; use 'hann' or 'sqrt_hann'")


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
