"""CPU inference fast path of the non-causal (gLN) TCN: frames-major, statistics folded away.

Conv-TasNet's masker spends its time in 1×1 convs (matmuls over ``[frames, channels]``) and
in moving 512-channel activations through memory between many small element-wise ops; PyTorch's
depthwise conv runs at about 1 GFLOP/s on this kind of CPU. This module computes exactly
:meth:`TCNMasker.forward <audiomask.maskers.tcn.TCNMasker.forward>` for ``norm="gLN"`` without
autograd, with four passes over memory per block instead of about twelve:

1. ``h = x Wᵢₙᵀ + bᵢₙ`` — one matmul, frames-major ``[T, H]``;
2. ``Σ prelu(h)``, ``Σ prelu(h)²`` — the first gLN's statistics (C kernel, one read);
3. ``g = prelu(dwconv(gLN(prelu(h))))`` and ``Σ g``, ``Σ g²`` — gLN applied as a per-channel
   affine while the dilated depthwise conv reads its taps (C kernel, one read, one write);
4. ``[x | skip] += g (W diag γ / σ)ᵀ`` — the second gLN folded into the residual/skip 1×1
   convs: ``W (γ (g − μ)/σ + β) + b = g (W diag γ / σ)ᵀ + (b + Wβ − (Wγ) μ/σ)``; the constant
   vector is not added to the ``[T, ·]`` activations but carried: for the residual path into
   the next block's input bias (``Wᵢₙ (x + o) = Wᵢₙ x + Wᵢₙ o``), for the skip path to the end.

Long inputs (above :data:`WHOLE` frames) run every pass over spans of :data:`SPAN` frames, so
that peak memory is ``[x | skip]``, one ``h`` shared by all blocks (both in their own memory
maps, :func:`~audiomask.runtime.mapped_zeros`) and a few spans: pass 2 reads each span of
``h`` while it is still in cache, and pass 3 runs twice, once for the statistics alone, then
span by span before each span's pass 4.

The input gLN is folded into the bottleneck the same way. Outputs equal the module's forward
to float32 rounding (tests: ≤ 1e-5 relative). Used by :class:`~audiomask.maskers.tcn.TCNMasker`
when :func:`~audiomask.maskers.tcn.dispatch.select_path` says so; ``AUDIOMASK_KERNELS=reference`` turns it off.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from audiomask import native
from audiomask.maskers.tcn.dispatch import MASK_ACTIVATIONS, BlockWeights, HeadWeights, tcn_weights
from audiomask.nn import onednn
from audiomask.runtime import mapped_zeros


@dataclass
class _FoldedBlock:
    """One block's weights (:class:`~audiomask.maskers.tcn.dispatch.BlockWeights`) with what the
    folding of its second gLN into the residual/skip 1×1 convs needs (module docstring)."""

    w: BlockWeights
    slope_in: float    # a₁ and a₂ as numbers (one slope per PReLU on this path)
    slope_dw: float
    w_gamma: Tensor    # [Wᵣₑₛ; W_skip] γ₂: [B + Sc]
    b_const: Tensor    # [bᵣₑₛ; b_skip] + [Wᵣₑₛ; W_skip] β₂: [B + Sc]


@dataclass
class _Plan:
    key: tuple
    head: HeadWeights
    w_bn: Tensor        # bottleneck W diag(γ₀): [B, N]
    w_bn_gamma: Tensor  # W γ₀ [B]
    b_bn: Tensor        # b + W β₀ [B]
    blocks: list[_FoldedBlock]


def _plan(masker) -> _Plan:
    """The folded weights of ``masker``, made once and kept until a parameter changes."""
    try:
        key = tuple((p.data_ptr(), p._version) for p in masker.parameters())
    except RuntimeError:  # parameters made under inference_mode have no version counter
        key = None
    cached = getattr(masker, "_fast_plan", None)
    if key is not None and cached is not None and cached.key == key:
        return cached
    head, block_ws = tcn_weights(masker)
    blocks = [_FoldedBlock(w, slope_in=float(w.a1.reshape(-1)[0]), slope_dw=float(w.a2.reshape(-1)[0]),
                           w_gamma=w.w_out @ w.g2, b_const=w.b_out + w.w_out @ w.be2)
              for w in block_ws]
    plan = _Plan(key=key, head=head, w_bn=head.w_bn * head.norm_w, w_bn_gamma=head.w_bn @ head.norm_w,
                 b_bn=head.b_bn + head.w_bn @ head.norm_b, blocks=blocks)
    masker._fast_plan = plan
    return plan


#: inputs of more frames than this run span by span (:func:`blocks`), so that no ``[T, N]``
#: or ``[T, H]`` activation but the blocks' shared ``h`` exists whole (long inputs: memory);
#: up to it every pass runs over all frames at once (short inputs: speed)
WHOLE = 8192
#: frames per span above :data:`WHOLE`
SPAN = 2048


def _spans(frames: int) -> list[tuple[int, int]]:
    """``[r0, r1)`` row ranges the passes run over: one, or spans of :data:`SPAN` frames."""
    if frames <= WHOLE:
        return [(0, frames)]
    return [(r0, min(frames, r0 + SPAN)) for r0 in range(0, frames, SPAN)]


@torch.no_grad()
def tcn_features(masker, rep: Tensor) -> Tensor:
    """What the mask head reads — the summed skip connections (or the residual path when the
    TCN has no skip path) — for one example given frames-major ``rep [T, N]``: ``[T, Sc]``
    (or ``[T, B]``). Equals the module's intermediate result to float32 rounding.
    (:func:`bottleneck` then :func:`blocks`; a caller that can compute ``rep`` span by span
    never holds it whole.)"""
    return blocks(masker, *bottleneck(masker, lambda r0, r1: rep[r0:r1], rep.shape[0]))


@torch.no_grad()
def bottleneck(masker, encode: Callable[[int, int], Tensor], frames: int) -> tuple[Tensor, Tensor]:
    """The input gLN and bottleneck of the frames-major encoder output, given as ``encode(r0,
    r1)`` → its rows ``[r1 − r0, N]`` of ``frames``: ``(acc, offset)`` where ``acc [T, B + Sc]``
    holds the residual path without its constant ``offset [B]`` and zeros for the skip sums.
    Above :data:`WHOLE` frames the rows are asked for twice, span by span (the norm's
    statistics, then the product), so ``[T, N]`` never exists whole."""
    p = _plan(masker)
    n_bn = p.w_bn.shape[0]
    width = p.blocks[0].w_gamma.shape[0] if p.blocks else n_bn
    spans = _spans(frames)
    kept = encode(*spans[0]).contiguous() if len(spans) == 1 else None
    sums = [native.prelu_stats(kept if kept is not None else encode(r0, r1).contiguous(), 1.0) for r0, r1 in spans]
    mean, inv = native.moments(sums, frames * p.head.norm_w.shape[0], p.head.eps)
    w = p.w_bn * inv
    acc = mapped_zeros(frames, width)  # [x | skip]: residual path and summed skips
    for r0, r1 in spans:
        acc[r0:r1, :n_bn] = onednn.linear(kept if kept is not None else encode(r0, r1).contiguous(), w)
    return acc, p.b_bn - p.w_bn_gamma * (mean * inv)


@torch.no_grad()
def blocks(masker, acc: Tensor, offset: Tensor) -> Tensor:
    """Every TCN block over :func:`bottleneck`'s ``(acc, offset)`` (``acc`` is updated in
    place); returns the features :func:`tcn_features` describes (a view of ``acc``)."""
    p = _plan(masker)
    frames, width = acc.shape
    n_bn = p.w_bn.shape[0]
    if not p.blocks:
        return acc.add_(offset)
    skip_offset = acc.new_zeros(width - n_bn)
    spans, hidden = _spans(frames), p.blocks[0].w.w_in.shape[0]
    g = acc.new_empty(spans[0][1] - spans[0][0], hidden)
    h = mapped_zeros(frames, hidden) if len(spans) > 1 else None  # made once, for every block
    for b in p.blocks:
        const = _block(b, acc, offset, g, h, spans)
        offset = offset + const[:n_bn]
        skip_offset = skip_offset + const[n_bn:]
    if width > n_bn:
        return acc[:, n_bn:].add_(skip_offset)
    return acc.add_(offset)


def _block(b: _FoldedBlock, acc: Tensor, offset: Tensor, g: Tensor, h: Tensor | None,
           spans: list[tuple[int, int]]) -> Tensor:
    """One block over ``acc [T, B + Sc]`` (updated in place) whose residual path lacks its
    constant ``offset [B]``. ``g`` holds the depthwise pass's rows: all of them when
    ``spans`` is one span; then ``h`` is ``None`` and the block makes its own. Otherwise
    ``g`` holds one span and ``h [T, H]`` is a buffer the blocks share. Returns the block's
    own constant ``[B + Sc]`` (module docstring).

    On more than one span every pass runs span by span, so besides ``acc`` and ``h`` a
    block holds only spans: the 1×1 conv in fills ``h`` (each product's statistics read
    while it is still in cache), the depthwise pass runs twice, first for the second norm's
    statistics alone, then to feed the residual/skip 1×1 convs, each span's product added
    into ``acc`` at once. (Writing into one ``h`` rather than a new ``[T, H]`` per block
    keeps the heap from growing: glibc would split the freed ``h`` for small requests and
    put the next one elsewhere.)"""
    w, frames, n_bn = b.w, acc.shape[0], offset.shape[0]
    count = frames * g.shape[1]
    x, bias = acc[:, :n_bn], torch.addmv(w.b_in, w.w_in, offset)
    if h is None:
        h = onednn.linear(x, w.w_in, bias)
        sums = [native.prelu_stats(h, b.slope_in)]
    else:
        sums = []
        for r0, r1 in spans:
            part = onednn.linear(x[r0:r1], w.w_in, bias)
            sums.append(native.prelu_stats(part, b.slope_in))
            h[r0:r1] = part
            del part  # before the next one is made
    mean, inv = native.moments(sums, count, w.eps1)
    scale = w.g1 * inv
    middle = functools.partial(native.norm_dwconv_prelu, h, b.slope_in, scale, w.be1 - scale * mean,
                               w.taps, w.b_dw.contiguous(), w.dilation, w.pad, b.slope_dw)
    whole = g.shape[0] == frames  # one depthwise pass, kept in g
    sums = [middle(g if whole else None, rows=span) for span in spans]
    mean, inv = native.moments(sums, count, w.eps2)
    w_out = w.w_out * (w.g2 * inv)  # [Wᵣₑₛ; W_skip] diag(γ₂) / σ₂
    for r0, r1 in spans:
        if not whole:
            middle(g[: r1 - r0], rows=(r0, r1))
        acc[r0:r1].add_(onednn.linear(g[: r1 - r0], w_out))
    return b.b_const - b.w_gamma * (mean * inv)


@torch.no_grad()
def tcn_scores(masker, features: Tensor) -> Tensor:
    """Mask scores before the activation for frames-major ``features [T, ·]``: ``[T, C·N]``
    (the activation, :data:`~.dispatch.MASK_ACTIVATIONS`, is element-wise or across sources, so it
    applies to the ``[T, C, N]`` view as it is)."""
    head = _plan(masker).head
    return onednn.linear(F.prelu(features, head.slope), head.w_mask, head.b_mask)


#: frames per step of :func:`separate`'s mask → decoder loop (bounds its memory)
MASK_SPAN = 1024


def separate(model, wav: Tensor) -> Tensor:
    """A whole Conv-TasNet (conv encoder → this TCN → conv decoder) on one waveform ``[T]`` →
    ``[C, T]``, equal to the module forward to float32 rounding, all frames-major. The encoder
    output ``[frames, N]`` is computed once and kept up to :data:`WHOLE` frames; above, it is
    never kept: the bottleneck and the masks compute it again span by span (a
    ``[frames, L] × [L, N]`` product); masks are made, applied and decoded
    :data:`MASK_SPAN` frames at a time, so no ``[C, N, frames]`` tensor exists either."""
    masker, encoder, basis = model.masker, model.encoder, model.decoder.conv.weight[:, 0]  # [N, L]
    n_frames, n_src = encoder.framing.n_frames(wav.shape[-1]), masker.n_src
    if n_frames <= WHOLE:  # short: encoded once, kept for the masks
        whole = encoder.frames_major(wav, 0, n_frames)
        encode = lambda t0, t1: whole[t0:t1]  # noqa: E731
    else:  # long: never whole, encoded again span by span
        encode = functools.partial(encoder.frames_major, wav)
    acc, offset = bottleneck(masker, encode, n_frames)
    features = blocks(masker, acc, offset)  # a view of acc
    head = _plan(masker).head
    frames = features.new_empty(n_src, n_frames, basis.shape[1])
    for t0 in range(0, n_frames, MASK_SPAN):
        t1 = min(t0 + MASK_SPAN, n_frames)
        hidden = F.prelu(features[t0:t1], head.slope)
        scores = onednn.linear(hidden, head.w_mask, head.b_mask).view(t1 - t0, n_src, -1)
        rep = encode(t0, t1)
        masked = MASK_ACTIVATIONS[masker.mask_act](scores).mul_(rep.unsqueeze(1))  # [F', C, N]
        torch.matmul(masked.transpose(0, 1), basis, out=frames[:, t0:t1])
    del acc, features
    return model.decoder.decode_frames(frames, wav.shape[-1])
