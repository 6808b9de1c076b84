"""The modules that get exported: one offline graph per model family and one streaming step
graph per causal family, each a plain function of tensors.

Offline graphs take ``mix [B, T]`` (echo canceller: ``mic [B, T], far [B, T]``) of any length
and return ``[B, n_out, T]``. Streaming graphs take one block of a fixed size and the state as
explicit tensors, and return the output block and the new state:
``(block, *state) -> (out, *new_state)``. Every state starts as zeros of its shape.

Both reuse the models' own code — the Conv-TasNet graph runs the model's own streaming
``step`` over a state made of its tensors (fixed-size histories); the TIGER and D3Net graphs
the maskers' own pair forms — and replace only what a graph without complex numbers cannot
hold: the STFT (:mod:`audiomask.filterbanks.stft`'s real-valued forms) and the complex glue
around the STFT maskers, which is written here with real/imaginary pairs (so the echo
canceller's streaming graph folds its STFT, masker step and overlap-add itself: the model's
own ``step`` runs on complex spectra).
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any, Iterator, List, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from audiomask.filterbanks.conv import ConvDecoderState
from audiomask.filterbanks.stft import RealISTFT, RealSTFT, complex_mul, normalise


class ExportError(ValueError):
    """A model (or an option) that cannot be exported; the message says why."""


# -- offline -------------------------------------------------------------------------------------
class OfflineSeparator(nn.Module):
    """A conv-encoder model (Conv-TasNet, MossFormer, MossFormer2) as it is: ``[B, T]`` →
    ``[B, n_src, T]``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, mix: Tensor) -> Tensor:
        return self.model(mix)


class OfflineTIGER(nn.Module):
    """TIGER with a real-valued STFT: ``[B, T]`` → ``[B, n_src, T]`` (``T > n_fft / 2``: the
    reflect padding of the STFT).

    The masks are the masker's own (:meth:`~audiomask.maskers.tiger.TIGERMasker.masks_from_pairs`,
    what its ``forward`` runs on ``view_as_real`` of the spectrum); only the mask product is
    written here, on real/imaginary pairs.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.stft, self.istft = RealSTFT(model.encoder), RealISTFT(model.decoder)

    def forward(self, mix: Tensor) -> Tensor:
        ri = self.stft(mix)  # [B, 2, F, frames]
        real, imag = self.model.masker.masks_from_pairs(ri)  # [B, C, F, frames] each
        est = complex_mul(torch.stack((real, imag), 2), ri.unsqueeze(1), 2)  # [B, C, 2, F, frames]
        return self.istft(est.flatten(0, 1), mix.shape[-1]).unflatten(0, (ri.shape[0], real.shape[1]))


class OfflineAEC(nn.Module):
    """The D3Net echo canceller with a real-valued STFT: ``mic [B, T], far [B, T]`` → near-end
    estimate ``[B, 1, T]``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.eval()
        self.stft, self.istft = RealSTFT(model.encoder), RealISTFT(model.decoder)

    def forward(self, mic: Tensor, far: Tensor) -> Tensor:
        spec = self.stft(mic)
        echo, noise, _ = self.model.masker.step_pairs(spec, self.stft(far), None)
        near = complex_mul(noise, complex_mul(echo, spec, 1), 1)
        return self.istft(near, mic.shape[-1]).unsqueeze(1)


# -- streaming -----------------------------------------------------------------------------------
class StreamGraph(nn.Module):
    """Base of the streaming step graphs.

    Attributes set by subclasses: ``block`` (input samples per call), ``input_names`` (the
    signal inputs), ``state_names`` and ``init_state()`` (zeros), ``discard`` (output
    samples at the start that belong to the model's left padding), ``latency`` (algorithmic
    latency in samples), ``n_out`` (output signals).
    """

    block: int
    discard: int
    latency: int
    n_out: int
    input_names: Sequence[str] = ("block",)

    def init_state(self) -> List[Tensor]:
        raise NotImplementedError

    def example_inputs(self) -> tuple[Tensor, ...]:
        signals = tuple(torch.zeros(1, self.block) for _ in self.input_names)
        return signals + tuple(self.init_state())


class ConvTasNetStream(StreamGraph):
    """One block of a causal Conv-TasNet: ``(block [1, n], enc [1, L-S], norm states…,
    histories…, dec [1, C, L-S]) -> (out [1, C, n], new states…)``.

    The model's own streaming step (:meth:`~audiomask.models.base.EncoderMaskerDecoder.step`:
    the conv encoder's step, :func:`~audiomask.maskers.tcn.stream_step.tcn_step`, the decoder's
    step) over a stream state made of the graph's tensors, with histories of exactly
    ``(P-1)·d`` frames. Needs ``n`` a multiple of the hop ``S`` and
    ``L = 2·S`` with the centred framing, so that every state keeps its shape; the first
    ``S`` output samples are the left padding (``discard``).
    """

    def __init__(self, model: nn.Module, block: int) -> None:
        super().__init__()
        from audiomask.maskers.tcn import TCNStreamState
        from audiomask.maskers.tcn.dispatch import tensors_of

        enc, masker = model.encoder, model.masker
        if enc.framing.mode != "centered" or enc.kernel_size != 2 * enc.stride:
            raise ExportError(f"{model.name}: streaming export needs the centred framing with L = 2·S "
                              f"(got {enc.framing.mode!r}, L={enc.kernel_size}, S={enc.stride}): only then "
                              "does the encoder state keep one shape from block to block")
        if block % enc.stride:
            raise ExportError(f"{model.name}: the block ({block} samples) must be a multiple of the encoder "
                              f"hop ({enc.stride} samples = {1000 * enc.stride / model.sample_rate:g} ms)")
        self.model = model
        self.block, self.discard, self.latency, self.n_out = block, enc.stride, enc.win, model.n_src
        s = self.masker_state = TCNStreamState(masker, 1, None)
        # the masker's weights (maskers/tcn/dispatch.py); their tensors as buffers, so that the
        # exported graph holds them as initializers
        for j, t in enumerate(tensors_of(s.head)):
            self.register_buffer(f"head_{j}", t.detach().clone(), persistent=False)
        for i, w in enumerate(s.blocks):
            for j, t in enumerate(tensors_of(w)):
                self.register_buffer(f"block_{i}_{j}", t.detach().clone(), persistent=False)
        self.contexts = [b.context for b in masker.blocks]
        self.hidden = masker.blocks[0].dw_conv.in_channels
        self.norm_shapes = [tuple(t.shape) for t in s.norm_states]
        self.has_norm_state = self.norm_shapes[0][-1] > 0  # chanLN keeps nothing
        self.state_names = (["encoder"] + ([f"norm_{i}" for i in range(len(self.norm_shapes))]
                                           if self.has_norm_state else [])
                            + [f"history_{i}" for i in range(len(self.contexts))] + ["decoder"])

    def init_state(self) -> List[Tensor]:
        enc = self.model.encoder
        states = [torch.zeros(1, enc.kernel_size - enc.stride)]
        if self.has_norm_state:
            states += [torch.zeros(shape, dtype=torch.float64) for shape in self.norm_shapes]
        states += [torch.zeros(1, c, self.hidden) for c in self.contexts]
        states.append(torch.zeros(1, self.n_out, enc.kernel_size - enc.stride))
        return states

    def forward(self, block: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        from audiomask.maskers.tcn.dispatch import tensors_of, with_tensors
        from audiomask.models.base import StreamState

        n_norm = len(self.norm_shapes) if self.has_norm_state else 0
        pending, rest = state[0], list(state[1:])
        norm_states = rest[:n_norm] if n_norm else [block.new_zeros(1, 0) for _ in self.norm_shapes]
        # the model's stream state, made of the graph's tensors: the masker's weights from the
        # graph's buffers, histories of exactly (P-1)·d frames (no spare room: ``ends`` empty),
        # a decoder with no left padding to drop (the graph's caller discards it)
        masker = copy.copy(self.masker_state)
        masker.head = with_tensors(masker.head, [getattr(self, f"head_{j}") for j in range(len(tensors_of(masker.head)))])
        masker.blocks = [with_tensors(w, [getattr(self, f"block_{i}_{j}") for j in range(len(tensors_of(w)))])
                         for i, w in enumerate(masker.blocks)]
        masker.norm_states = list(norm_states)
        masker.buffers = list(rest[n_norm : n_norm + len(self.contexts)])
        masker.ends, masker.native = [], None
        stream = StreamState([pending], masker, ConvDecoderState(rest[-1], 0))
        out, stream = self.model.step([block], stream)  # the model's own fold of its layers' steps
        return (out, stream.encoders[0], *(stream.masker.norm_states if n_norm else []), *stream.masker.buffers,
                stream.decoder.tail)


class AECStream(StreamGraph):
    """One block of the D3Net echo canceller: ``(block [1, n], far_block [1, n], mic STFT
    [1, n_fft-hop], far STFT [1, n_fft-hop], conv histories…, overlap-add [1, 1, n_fft-hop],
    window sum [n_fft-hop]) -> (near-end [1, 1, n], new states…)``.

    The STFT frames complete in the block, the masker's step (each causal conv with its
    history), the overlap-add of the inverse transform — what
    :meth:`D3NetAEC.step <audiomask.models.aec.D3NetAEC.step>` does. Needs zero padding, ``hop =
    n_fft / 2`` and ``n`` a multiple of the hop; the first ``n_fft / 2`` output samples are the
    STFT's left padding (``discard``).
    """

    input_names = ("block", "far_block")

    def __init__(self, model: nn.Module, block: int) -> None:
        super().__init__()
        enc = model.encoder
        if enc.pad_mode != "constant" or 2 * enc.hop_length != enc.n_fft:
            raise ExportError(f"{model.name}: streaming export needs a zero-padded STFT with hop = n_fft/2 "
                              f"(got pad_mode={enc.pad_mode!r}, n_fft={enc.n_fft}, hop={enc.hop_length})")
        if block % enc.hop_length:
            raise ExportError(f"{model.name}: the block ({block} samples) must be a multiple of the STFT hop "
                              f"({enc.hop_length} samples = {1000 * enc.hop_length / model.sample_rate:g} ms)")
        self.model = model.eval()
        self.stft, self.istft = RealSTFT(enc), RealISTFT(model.decoder)
        self.block, self.discard, self.latency, self.n_out = block, enc.n_fft // 2, enc.win, 1
        self.overlap = enc.n_fft - enc.hop_length
        with torch.no_grad():  # the masker's state layout: run one frame from no history
            spec = torch.zeros(1, 2, enc.n_bins, 1)
            _, _, state = self.model.masker.step_pairs(spec, spec, None)
        self.state_tree = _structure(state)
        self.history_shapes = [tuple(t.shape) for t in _leaves(state)]
        self.state_names = (["mic_stft", "far_stft"] + [f"history_{i}" for i in range(len(self.history_shapes))]
                            + ["overlap_add", "window_sum"])

    def init_state(self) -> List[Tensor]:
        return ([torch.zeros(1, self.overlap), torch.zeros(1, self.overlap)]
                + [torch.zeros(shape) for shape in self.history_shapes]
                + [torch.zeros(1, 1, self.overlap), torch.zeros(self.overlap)])

    def forward(self, block: Tensor, far_block: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        mic_buf = torch.cat((state[0], block), -1)
        far_buf = torch.cat((state[1], far_block), -1)
        n_hist = len(self.history_shapes)
        history = _rebuild(self.state_tree, list(state[2 : 2 + n_hist]))
        ola, env_tail = state[2 + n_hist], state[3 + n_hist]
        spec = self.stft.frames(mic_buf)  # [1, 2, F, frames]
        echo, noise, history = self.model.masker.step_pairs(spec, self.stft.frames(far_buf), history)
        near = complex_mul(noise, complex_mul(echo, spec, 1), 1)  # [1, 2, F, frames]
        wav, env = self.istft.overlap_add(near)
        tail = self.overlap
        wav = torch.cat((wav[:, :tail] + ola[:, 0], wav[:, tail:]), -1)
        env = torch.cat((env[:tail] + env_tail, env[tail:]))
        done = self.block
        out = normalise(wav[:, :done], env[:done]).unsqueeze(1)
        keep = mic_buf.shape[-1] - self.overlap
        return (out, mic_buf[:, keep:], far_buf[:, keep:], *_leaves(history),
                wav[:, done:].unsqueeze(1), env[done:])


def _leaves(tree: Any) -> List[Tensor]:
    if isinstance(tree, Tensor):
        return [tree]
    return [leaf for item in tree for leaf in _leaves(item)]


def _structure(tree: Any) -> Any:
    return None if isinstance(tree, Tensor) else [_structure(item) for item in tree]


def _rebuild(structure: Any, leaves: List[Tensor]) -> Any:
    if structure is None:
        return leaves.pop(0)
    return [_rebuild(item, leaves) for item in structure]


# -- tracing mode --------------------------------------------------------------------------------
@contextlib.contextmanager
def tracing_mode() -> Iterator[None]:
    """What exporting needs switched for the duration: plain PyTorch (``reference`` mode of
    :mod:`audiomask.accel`: a graph can only hold PyTorch ops); TIGER's adaptive average pooling — whose output size is a
    plain ``int`` argument, so tracing it fixes the input length — computed from a cumulative
    sum, which keeps the length symbolic (the same numbers, to float rounding); and the global
    layer norm's statistics summed per channel first (:func:`_graph_global_norm`)."""
    from audiomask import accel
    from audiomask.nn import multiscale
    from audiomask.nn.norms import GlobalLayerNorm

    functional, gln = multiscale.F, GlobalLayerNorm.forward
    multiscale.F = _TraceableFunctional()
    GlobalLayerNorm.forward = _graph_global_norm
    try:
        with accel.force("reference"):
            yield
    finally:
        multiscale.F, GlobalLayerNorm.forward = functional, gln


def _graph_global_norm(self: nn.GroupNorm, x: Tensor) -> Tensor:
    """gLN (``GroupNorm(1, C)``) of ``x [B, C, T…]`` as a graph, with its mean and variance taken
    over time first, then over channels (equal counts, so the mean of means is the mean).
    Exported as is, GroupNorm becomes one float32 reduction over all ``C·T`` values, which
    onnxruntime sums with an error that grows with the count: for the trained Conv-TasNet at
    4 s that moved outputs by 2.4e-4; summed in two stages, 8e-7 (against float64)."""
    dims = tuple(range(2, x.dim()))
    mean = x.mean(dim=dims, keepdim=True).mean(dim=1, keepdim=True)
    centred = x - mean
    var = centred.pow(2).mean(dim=dims, keepdim=True).mean(dim=1, keepdim=True)
    shape = (1, -1) + (1,) * len(dims)
    return centred * (var + self.eps).rsqrt() * self.weight.view(shape) + self.bias.view(shape)


class _TraceableFunctional:
    """``torch.nn.functional`` with a symbolic-length ``adaptive_avg_pool1d``."""

    def __getattr__(self, name: str) -> Any:
        return getattr(F, name)

    @staticmethod
    def adaptive_avg_pool1d(x: Tensor, output_size: int) -> Tensor:
        return adaptive_avg_pool1d(x, output_size)


def adaptive_avg_pool1d(x: Tensor, output_size: int) -> Tensor:
    """``F.adaptive_avg_pool1d`` for ``[..., L]`` with ``L`` and ``output_size`` symbolic: bin
    ``j`` averages ``[floor(j·L/n), ceil((j+1)·L/n))``, from a float64 cumulative sum."""
    length = x.shape[-1]
    j = torch.arange(output_size, device=x.device)
    start = torch.div(j * length, output_size, rounding_mode="floor")
    end = torch.div((j + 1) * length + output_size - 1, output_size, rounding_mode="floor")
    csum = F.pad(x.double().cumsum(-1), (1, 0))
    total = csum.index_select(-1, end) - csum.index_select(-1, start)
    return (total / (end - start).double()).to(x.dtype)
