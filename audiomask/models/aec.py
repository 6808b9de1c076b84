"""Joint acoustic echo cancellation and noise suppression: STFT → complex D3Net → dual masks → iSTFT.

K. N. Watcharasupat et al., "End-to-end complex-valued multidilated convolutional neural network
for joint acoustic echo cancellation and noise suppression", ICASSP 2022. No code is public;
the ``"paper"`` preset keeps what the paper states (pseudo-complex D3Net blocks without pooling,
two complex masks, ≈354K parameters: 354,052 here) and fills in the rest, documented in
:class:`D3NetAECConfig`. The model is causal in time and streams exactly
(:meth:`D3NetAEC.stream`).

The two masks and what they give (``Y`` microphone STFT, all products per bin and frame)::

    M_e · Y                   echo-free microphone signal (near-end speech + noise)
    Ŝ = M_n · M_e · Y         near-end speech estimate        (noise suppressed too)
    Ê = (1 - M_e) · Y         echo estimate
    N̂ = (1 - M_n) · M_e · Y   noise estimate

so ``Ŝ + Ê + N̂ = Y`` exactly: the microphone signal is split three ways, and the echo mask
``M_e`` is trained against the echo-free signal (:func:`audiomask.losses.aec_loss`), the
noise mask ``M_n`` against the near-end speech. The far-end reference is an input of the
network only (it tells the network what the echo sounds like); no mask is applied to it, so
a bulk delay of any length within the receptive field needs no alignment.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from audiomask.filterbanks import ISTFTDecoder, STFTEncoder
from audiomask.maskers.d3net import D3NetAECMasker
from audiomask.models.base import EncoderMaskerDecoder, StreamState
from audiomask.models.registry import register_model

OUTPUTS = ("near_end", "echo", "noise")


@dataclass
class D3NetAECConfig:
    """Hyper-parameters. The paper gives the architecture family and the size (≈354K); the
    values of the ``"paper"`` preset are chosen here, and why:

    Attributes:
        sample_rate: 16 kHz, the AEC Challenge rate.
        n_src: 1 — the model's output is the near-end speech (echo and noise on request).
        win: STFT window (and FFT) length, 320 samples = 20 ms: the usual 20 ms / 10 ms
            framing of real-time AEC and noise suppression; it is also the algorithmic latency.
        hop: 160 samples = 10 ms (50 % overlap).
        window: ``"sqrt_hann"``: with 50 % overlap its square sums to one, so analysis and
            synthesis windows are a perfect-reconstruction pair (``torch.istft``'s division by
            the summed window is then by 1 in the steady state).
        pad_mode: ``"constant"``: zeros beyond the ends (a stream cannot reflect samples it
            has not received; offline and streamed then agree from the first sample).
        compress: 0.3, magnitude compression of the input spectra (``|Y|^0.3`` with the phase).
        chan: C = 24 complex channels between D3 blocks.
        growth: k = 16, complex channels each multidilated layer adds.
        n_layers: L = 3 layers per D2 block (dilations 1, 2, 4 in frequency and time).
        n_d2: M = 2 D2 blocks per D3 block.
        n_blocks: 3 D3 blocks. With C, k, L, M this gives 354,052 parameters (the paper's
            ≈354K; found by a grid search over C, k, L, M and the block count) and a receptive
            field of 89 frames (0.9 s with the window, all in the past) — enough for bulk
            delays up to 200 ms plus the echo path's reverberation tail.
        kernel_freq, kernel_time: 3 × 3 kernels (D3Net's), time causal (left padding only).
        norm: ``"batch"`` (D3Net's BN → ReLU → conv order; BN is a fixed affine map at
            inference, so the model is causal there; streaming needs ``eval()``) or
            ``"frame"`` (per-frame statistics, causal in training too).
        mask_act: ``"tanh"`` — masks of magnitude ≤ 1 (they remove, never add energy), any phase.
    """

    sample_rate: int = 16000
    n_src: int = 1
    win: int = 320
    hop: int = 160
    window: str = "sqrt_hann"
    pad_mode: str = "constant"
    compress: float = 0.3
    chan: int = 24
    growth: int = 16
    n_layers: int = 3
    n_d2: int = 2
    n_blocks: int = 3
    kernel_freq: int = 3
    kernel_time: int = 3
    norm: str = "batch"
    mask_act: str = "tanh"

    def __post_init__(self) -> None:
        if self.n_src != 1:
            raise ValueError(f"d3net-aec: n_src must be 1 (the near-end speech), got {self.n_src}")
        if not 0 < self.hop <= self.win:
            raise ValueError(f"d3net-aec: hop ({self.hop}) must be in (0, win={self.win}]")
        if not 0 < self.compress <= 1:
            raise ValueError(f"d3net-aec: compress must be in (0, 1], got {self.compress}")


@register_model
class D3NetAEC(EncoderMaskerDecoder):
    """Complex D3Net echo canceller and noise suppressor.

    ``model(mic, far_end)``: ``[B, T]`` each (or ``[T]``) → near-end estimate ``[B, T]``;
    ``model(mic, far_end, return_all=True)`` → ``[B, 3, T]``: near-end, echo and noise
    estimates (they add up to ``mic``).

    Presets: ``"paper"`` (354,052 parameters, see :class:`D3NetAECConfig`), ``"small"``
    (25,780: C=8, k=8, L=4, M=1, 2 D3 blocks; trains on a CPU), ``"tiny"`` (tests).
    """

    name = "d3net-aec"
    task = "aec"  # the trainer builds echo-cancellation data and objectives for it
    config_class = D3NetAECConfig
    presets = {
        "paper": {},
        "small": {"chan": 8, "growth": 8, "n_layers": 4, "n_d2": 1, "n_blocks": 2},
        "tiny": {"chan": 4, "growth": 4, "n_layers": 2, "n_d2": 1, "n_blocks": 1, "win": 128, "hop": 64},
    }

    def __init__(self, config: D3NetAECConfig | None = None) -> None:
        c = config or D3NetAECConfig()
        encoder = STFTEncoder(c.win, c.hop, window=c.window, pad_mode=c.pad_mode)
        masker = D3NetAECMasker(c.chan, c.growth, c.n_layers, c.n_d2, c.n_blocks,
                                (c.kernel_freq, c.kernel_time), c.norm, c.compress, c.mask_act)
        decoder = ISTFTDecoder.like(encoder)
        super().__init__(c, encoder, masker, decoder)

    # -- the four steps, with two inputs -------------------------------------------------
    def encode_pair(self, mic: Tensor, far_end: Tensor) -> tuple[Tensor, Tensor]:
        """STFTs of both signals: complex ``[B, F, frames]`` each."""
        return self.encoder(mic), self.encoder(far_end)

    def estimate_masks(self, rep: tuple[Tensor, Tensor]) -> Tensor:
        """``(Y, X)`` → complex masks ``[B, 2, F, frames]``: ``M_e`` (echo), ``M_n`` (noise)."""
        return self.masker(*rep)

    def apply_masks(self, rep: Tensor, masks: Tensor, return_all: bool = False) -> Tensor:
        """Microphone STFT ``Y [B, F, frames]`` and masks → ``[B, 1, F, frames]`` (near-end
        ``M_n·M_e·Y``) or, with ``return_all``, ``[B, 3, F, frames]`` (near-end, echo
        ``(1-M_e)·Y``, noise ``(1-M_n)·M_e·Y``)."""
        echo_mask, noise_mask = masks.unbind(1)
        echo_free = echo_mask * rep
        near = noise_mask * echo_free
        if not return_all:
            return near.unsqueeze(1)
        return torch.stack([near, rep - echo_free, echo_free - near], dim=1)

    def forward(self, mic: Tensor, far_end: Tensor | None = None, return_all: bool = False) -> Tensor:
        mic_b, far_b, unbatched = check_pair(mic, far_end, self.name)
        rep_mic, rep_far = self.encode_pair(mic_b, far_b)
        masked = self.apply_masks(rep_mic, self.estimate_masks((rep_mic, rep_far)), return_all)
        est = self.decode(masked, mic_b.shape[-1])
        if not return_all:
            est = est[:, 0]
        return est[0] if unbatched else est

    # -- streaming: two inputs, the base class's fold -------------------------------------
    stream_inputs = ("microphone block", "far-end block")

    def init_state(self, batch: int = 1, device: torch.device | None = None,
                   return_all: bool = False) -> StreamState:
        """A fresh stream (see :meth:`EncoderMaskerDecoder.init_state`); with ``return_all``
        it gives near-end, echo and noise. Needs ``eval()`` (batch norm's running statistics)."""
        if self.training:
            raise ValueError("streaming needs the model in eval mode (batch norm uses its running "
                             "statistics there): call model.eval() first")
        state = super().init_state(batch, device)
        state.decoder = self.decoder.init_state((batch, 3 if return_all else 1), device)
        state.options["return_all"] = return_all
        return state

    def _stream_masked(self, reps: list[Tensor], masks: Tensor, state: StreamState) -> Tensor:
        return self.apply_masks(reps[0], masks, state.options["return_all"])

    def _stream_out(self, wav: Tensor, state: StreamState) -> Tensor:
        """``[B, m]`` (near-end), or ``[B, 3, m]`` with ``return_all``."""
        return wav if state.options["return_all"] else wav[:, 0]

    def stream(self, batch: int = 1, return_all: bool = False, sample_rate: int | None = None,
               nonfinite: str = "error"):
        """An exact stateful stream: ``process(mic_block, far_block)``, then ``flush()``.
        ``sample_rate`` and ``nonfinite`` as for separators' ``stream()``.
        See :class:`audiomask.streaming.StreamingSession`."""
        from audiomask.streaming import StreamingSession

        return StreamingSession(self.eval(), batch, sample_rate=sample_rate, nonfinite=nonfinite,
                                return_all=return_all)


def check_pair(mic: Tensor, far_end: Tensor | None, name: str = "aec") -> tuple[Tensor, Tensor, bool]:
    """Validate the two inputs of an echo canceller: ``[T]`` or ``[B, T]`` each (``[B, 1, T]``
    accepted), same shape, finite, floating point. Returns ``(mic [B, T], far [B, T], unbatched)``."""
    if far_end is None:
        raise ValueError(f"{name} needs two inputs, the microphone signal and the far-end (loudspeaker) "
                         "reference: model(mic, far_end); on files use `audiomask aec --mic M --far F`")
    pair = []
    for label, x in (("microphone", mic), ("far-end", far_end)):
        if not torch.is_tensor(x) or not x.is_floating_point():
            raise ValueError(f"{name}: the {label} signal must be a floating-point tensor")
        if x.dim() == 3 and x.shape[1] == 1:
            x = x[:, 0]
        if x.dim() not in (1, 2):
            raise ValueError(f"{name}: the {label} signal must be [T] or [batch, T], got shape {tuple(x.shape)}")
        pair.append(x)
    mic, far_end = pair
    if mic.shape != far_end.shape:
        raise ValueError(f"{name}: microphone and far-end signals must have the same shape (same length, "
                         f"same rate), got {tuple(mic.shape)} and {tuple(far_end.shape)}")
    if mic.shape[-1] == 0:
        raise ValueError(f"{name}: empty signals")
    for label, x in (("microphone", mic), ("far-end", far_end)):
        if not torch.isfinite(x).all():
            raise ValueError(f"{name}: the {label} signal has NaN or Inf samples")
    unbatched = mic.dim() == 1
    if unbatched:
        mic, far_end = mic.unsqueeze(0), far_end.unsqueeze(0)
    return mic, far_end, unbatched
