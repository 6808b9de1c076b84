"""The learned conv filterbank of TasNet: waveform ⇄ ``[B, N, frames]`` with exact inverse framing.

:class:`ConvEncoder` / :class:`ConvDecoder` — ``N`` filters of length ``L``, hop ``S``
(``L/2`` in the papers); ``decoder(encoder(x), length=x.shape[-1])`` has the input's length for
any length ≥ 1. :class:`Framing` is the padding rule both share.
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
    def init_state(self, batch: int, device: torch.device | None = None) -> torch.Tensor:
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

    def flush(self, pending: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The last frames of a stream of ``length`` samples in all: those over the right
        padding the offline pass adds (:meth:`Framing.pads`)."""
        right = self.framing.pads(length)[1]
        return self.step(pending.new_zeros(pending.shape[0], right), pending)


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
    def init_state(self, lead: tuple[int, ...], device: torch.device | None = None) -> "ConvDecoderState":
        """A fresh stream of signals with leading shape ``lead`` (e.g. ``(batch, n_src)``)."""
        left = self.framing.pads(0)[0]
        return ConvDecoderState(torch.zeros(*lead, self.kernel_size - self.stride, device=device), left)

    def step(self, rep: torch.Tensor, state: "ConvDecoderState") -> tuple[torch.Tensor, "ConvDecoderState"]:
        """Overlap-add the next frames ``rep [..., N, F]``: the samples that are now final
        (``F·S`` of them, fewer at the start, where the encoder's left padding is dropped)."""
        tail = state.tail
        if rep.shape[-1] == 0:
            return tail[..., :0], state
        # a few frames: one matmul [.., F, N] @ [N, L] and an overlap-add (fold) of the frames
        wav = self._overlap_add(torch.matmul(rep.transpose(-1, -2), self.conv.weight[:, 0]))
        wav = torch.cat([wav[..., : tail.shape[-1]] + tail, wav[..., tail.shape[-1] :]], dim=-1)
        done = rep.shape[-1] * self.stride
        out, state.tail = wav[..., :done], wav[..., done:]
        return self._emit(out, state), state

    def flush(self, state: "ConvDecoderState", length: int) -> tuple[torch.Tensor, "ConvDecoderState"]:
        """The rest of a stream of ``length`` samples in all: the tail the last frames left,
        cut — or, where "valid" framing dropped an incomplete last frame, zero-padded — so
        that the stream has given ``length`` samples (none more if it already has)."""
        before = state.emitted
        out = self._emit(state.tail, state)
        missing = max(0, length - before)
        out = F.pad(out, (0, max(0, missing - out.shape[-1])))[..., :missing]
        state.emitted, state.tail = before + out.shape[-1], state.tail[..., :0]
        return out, state

    @staticmethod
    def _emit(wav: torch.Tensor, state: "ConvDecoderState") -> torch.Tensor:
        if state.drop:
            k = min(state.drop, wav.shape[-1])
            wav, state.drop = wav[..., k:], state.drop - k
        state.emitted += wav.shape[-1]
        return wav


@dataclass
class ConvDecoderState:
    """What a streamed :class:`ConvDecoder` carries between blocks.

    Attributes:
        tail: ``[*lead, L - S]`` overlap-added samples that later frames still add to.
        drop: samples still to drop at the start (the encoder's left padding).
        emitted: output samples given so far.
    """

    tail: torch.Tensor
    drop: int
    emitted: int = 0
