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

from dataclasses import dataclass

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

    def frames_major(self, wav: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """:meth:`forward` of one waveform ``[T]`` as frames-major ``[frames, N]`` (or its frames
        ``start … stop − 1``): one matmul of the framed samples ``[frames, L]`` with the basis
        ``[N, L]``."""
        left, right = self.framing.pads(wav.shape[-1])
        framed = F.pad(wav, (left, right)).unfold(-1, self.kernel_size, self.stride)[start:stop]
        rep = F.linear(framed, self.conv.weight[:, 0])
        return rep.relu_() if self.activation == "relu" else rep

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
        return self._crop(wav, length).reshape(*lead, length)

    def decode_frames(self, frames: torch.Tensor, length: int) -> torch.Tensor:
        """:meth:`forward` for synthesis frames already multiplied by the basis: ``frames
        [..., F, L]`` (``rep`` frames-major ``@ weight[:, 0]``) → ``[..., length]``."""
        return self._crop(self._overlap_add(frames), length)

    def _crop(self, wav: torch.Tensor, length: int) -> torch.Tensor:
        """Undo the encoder's padding: ``length`` samples of the overlap-added ``wav``."""
        left = self.framing.pads(length)[0]
        wav = wav[..., left : left + length]
        # "valid" framing drops the incomplete last frame: zeros there (padding unconditionally,
        # by 0 when nothing is missing, keeps traced and exported graphs right for every length)
        wav = F.pad(wav, (0, length - wav.shape[-1]))
        return wav

    def _overlap_add(self, frames: torch.Tensor) -> torch.Tensor:
        """``[..., F, L]`` → ``[..., (F - 1)·S + L]``: frame ``f`` added at sample ``f·S``."""
        lead, n_frames = frames.shape[:-2], frames.shape[-2]
        length = (n_frames - 1) * self.stride + self.kernel_size
        wav = F.fold(frames.reshape(-1, n_frames, self.kernel_size).transpose(1, 2), (1, length),
                     (1, self.kernel_size), stride=(1, self.stride))
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
        # a few frames: one matmul [.., F, N] @ [N, L] and an overlap-add (fold) of the frames
        wav = self._overlap_add(torch.matmul(rep.transpose(-1, -2), self.conv.weight[:, 0]))
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

    # -- streaming -----------------------------------------------------------------------
    # The offline transform is centred: frame f covers samples [f·hop - n_fft/2, f·hop + n_fft/2)
    # of the signal padded by n_fft/2 on each side. A stream therefore emits frame f once the
    # samples up to f·hop + n_fft/2 - 1 have arrived (the STFT's look-ahead), builds the left
    # padding as soon as it is known (at once for zeros; after n_fft/2 + 1 samples for
    # "reflect") and the right padding in :meth:`finish`, when the length is known.
    def initial_state(self, batch: int, device: torch.device | None = None) -> "STFTStreamState":
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

    def finish(self, state: "STFTStreamState") -> tuple[torch.Tensor, "STFTStreamState"]:
        """The last frames, over the right padding the offline pass adds at the end; after
        this the stream has given exactly ``received // hop + 1`` frames."""
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
        left = (self.n_fft - self.win_length) // 2
        return F.pad(self.window, (left, self.n_fft - self.win_length - left))


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
    def initial_state(self, lead: tuple[int, ...], device: torch.device | None = None) -> ISTFTStreamState:
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
        out = self._normalise(wav[..., :done], env[:done])
        state.ola, state.env = wav[..., done:], env[done:]
        if state.drop:
            k = min(state.drop, out.shape[-1])
            out, state.drop = out[..., k:], state.drop - k
        state.emitted += out.shape[-1]
        return out, state

    def finish(self, state: ISTFTStreamState, length: int) -> tuple[torch.Tensor, ISTFTStreamState]:
        """The rest of a signal of ``length`` samples in all: the samples the last frames
        covered (zeros where no frame did, as ``torch.istft`` pads), cut at ``length``."""
        out = self._normalise(state.ola, state.env)
        if state.drop:
            k = min(state.drop, out.shape[-1])
            out, state.drop = out[..., k:], state.drop - k
        missing = max(0, length - state.emitted)
        out = F.pad(out, (0, max(0, missing - out.shape[-1])))[..., :missing]
        state.emitted += out.shape[-1]
        state.ola, state.env = state.ola[..., :0], state.env[:0]
        return out, state

    @staticmethod
    def _normalise(wav: torch.Tensor, env: torch.Tensor) -> torch.Tensor:
        ok = env > 1e-11
        return torch.where(ok, wav / torch.where(ok, env, torch.ones_like(env)), torch.zeros_like(wav))

    def full_window(self) -> torch.Tensor:
        """The synthesis window zero-padded (centred) to ``n_fft``, as ``torch.istft`` uses it."""
        left = (self.n_fft - self.win_length) // 2
        return F.pad(self.window, (left, self.n_fft - self.win_length - left))


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
