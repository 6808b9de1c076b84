"""Gated single-head attention of MossFormer (FLASH-style) and its small helpers.

Zhao & Ma, "MossFormer: Pushing the Performance Limit of Monaural Speech Separation using
Gated Single-Head Transformer with Convolution-Augmented Joint Self-Attentions", ICASSP 2023;
the layer follows the authors' code (ModelScope ``mossformer_block.py``, ClearerVoice
``FLASH_ShareA_FFConvM``), itself derived from the FLASH layer of Hua et al. (2022).

* :class:`ScaleNorm` — ``x / max(‖x‖·D^-½, eps) · g`` over the last axis, one learned gain.
* :class:`ScaledSinusoidalEmbedding` — absolute sin/cos position code times a learned scalar.
* :class:`RotaryEmbedding` — rotary position code on the first ``dim`` features, adjacent
  pairs rotated together (GPT-J layout); one instance is shared by all layers of a stack.
* :class:`OffsetScale` — one shared query/key projection turned into ``heads`` copies by a
  per-copy gain and offset.
* :func:`token_shift` — the first half of the channels delayed by one frame.
* :class:`GatedAttentionUnit` — the MossFormer block: token shift → FFConvM projections →
  joint local (quadratic, within chunks of ``g`` frames) + global (linear) attention →
  gated output → FFConvM → residual.

Memory: the quadratic part allocates ``[B, T/g, g, g]`` (linear in T for a fixed chunk);
the linear part ``[B, S, 2E]`` (non-causal) or ``[B, T/g, S, 2E]`` (causal). Nothing is
``O(T²)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from audiomask.nn.ffconv import FFConvM


class ScaleNorm(nn.Module):
    """ScaleNorm (Nguyen & Salazar, 2019): ``x / clamp(‖x‖₂ · D^-½, eps) · g``.

    Args:
        dim: D, size of the last axis.
        eps: lower bound of the scaled norm (the authors' 1e-5).

    Shapes: ``[..., D]`` → same. ``g`` is a single learned scalar.
    """

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.dim, self.scale, self.eps = dim, dim**-0.5, eps
        self.g = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True) * self.scale
        return x / norm.clamp(min=self.eps) * self.g

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}"


class ScaledSinusoidalEmbedding(nn.Module):
    """Absolute position code ``[sin(t·ω), cos(t·ω)] · scale`` with ``ω_i = 10000^(-2i/D)``.

    ``inv_freq`` (the ``ω``) is a persistent buffer, as in the authors' code, so their
    checkpoints carry it. Returns ``[frames, D]`` for ``frames`` positions ``0 … frames-1``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.register_buffer("inv_freq", 1.0 / (10000 ** (torch.arange(0, dim, 2).float() / dim)))

    def forward(self, frames: int) -> torch.Tensor:
        t = torch.arange(frames, device=self.inv_freq.device, dtype=self.inv_freq.dtype)
        angles = t[:, None] * self.inv_freq[None, :]
        return torch.cat((angles.sin(), angles.cos()), dim=-1) * self.scale


class RotaryEmbedding(nn.Module):
    """Rotary position embedding on the first ``dim`` features (Su et al., 2021).

    Feature pairs ``(2i, 2i+1)`` are rotated by ``t · θ_i``, ``θ_i = 10000^(-2i/dim)``, at frame
    ``t`` — the layout of ``rotary_embedding_torch.RotaryEmbedding`` that the authors use. The
    frequencies are a fixed (persistent) buffer ``freqs [dim/2]``; the authors store them as a
    frozen parameter, once per layer, all aliases of one tensor.

    Call :meth:`angles` once per sequence and pass the result to every layer's :meth:`rotate`.
    """

    def __init__(self, dim: int = 32, theta: float = 10000.0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"rotary dimension must be even, got {dim}")
        self.dim = dim
        self.register_buffer("freqs", 1.0 / (theta ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim)))

    def angles(self, frames: int, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """``(cos, sin)``, each ``[frames, dim]`` (every angle repeated for its pair)."""
        t = torch.arange(frames, device=self.freqs.device, dtype=dtype).to(self.freqs.dtype)
        angles = (t[:, None] * self.freqs[None, :]).repeat_interleave(2, dim=-1)
        return angles.cos(), angles.sin()

    def rotate(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Rotate ``x [..., frames, *, F]`` (``F >= dim``); ``cos``/``sin`` broadcast against
        ``x[..., :dim]`` (e.g. ``[frames, 1, dim]`` for a copies axis)."""
        rot, rest = x[..., : self.dim], x[..., self.dim :]
        pairs = rot.unflatten(-1, (-1, 2))
        half = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
        return torch.cat((rot * cos + half * sin, rest), dim=-1)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class OffsetScale(nn.Module):
    """``heads`` copies of one projection: ``x[..., None, :] · γ_h + β_h``.

    Shapes: ``[..., S]`` → ``[..., heads, S]``. ``γ`` starts at N(0, 0.02²), ``β`` at 0.
    """

    def __init__(self, dim: int, heads: int = 4) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.empty(heads, dim))
        self.beta = nn.Parameter(torch.zeros(heads, dim))
        nn.init.normal_(self.gamma, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(-2) * self.gamma + self.beta


def token_shift(x: torch.Tensor) -> torch.Tensor:
    """Delay the first ``ceil(D/2)`` channels of ``x [B, T, D]`` by one frame (zeros enter).

    A free way to mix each frame with its predecessor; causal.
    """
    first = (x.shape[-1] + 1) // 2
    shifted = F.pad(x[..., :first], (0, 0, 1, -1))
    return torch.cat((shifted, x[..., first:]), dim=-1)


class GatedAttentionUnit(nn.Module):
    """One MossFormer block (the authors' ``MossFormerBlock`` / ``FLASH_ShareA_FFConvM``).

    With ``x [B, T, D]``: token shift; ``[v, u] = FFConvM_h(x)`` (each ``[B, T, E]``,
    ``2E = D·expansion``); ``z = FFConvM_qk(x) [B, T, S]`` and four copies of it by
    :class:`OffsetScale` → ``(q_quad, q_lin, k_quad, k_lin)``, rotary-encoded. Attention of
    ``w`` ∈ {v, u}: ``A(w) = relu²(q_quad k_quadᵀ / g) w`` within each chunk of ``g`` frames
    plus ``q_lin (k_linᵀ w) / T`` over the whole sequence. Output
    ``x + FFConvM_o((A(u) ⊙ v) ⊙ σ(A(v) ⊙ u))``.

    Args:
        dim: D, model width.
        group_size: g, chunk length (frames) of the quadratic attention.
        qk_dim: S, query/key width.
        expansion: ``2E / D`` (the authors' expansion factor, 4).
        conv_kernel_size: depthwise kernel of the FFConvM conv modules (17).
        dropout: on the quadratic attention weights and at the end of each FFConvM.
        causal: quadratic attention masked to ``j <= i`` inside a chunk and linear attention
            over the previous chunks only (exclusive cumulative sum, scaled by ``1/g``) — the
            authors' causal attention; in addition the FFConvM convs are left-padded (the
            authors keep them symmetric, which would see 8 frames ahead).
        shift_tokens: apply :func:`token_shift` first.

    The shared :class:`RotaryEmbedding`'s ``(cos, sin)`` for the sequence are passed to
    :meth:`forward`; the layer itself holds no position state.
    """

    def __init__(self, dim: int, group_size: int = 256, qk_dim: int = 128, expansion: int = 4,
                 conv_kernel_size: int = 17, dropout: float = 0.1, causal: bool = False,
                 shift_tokens: bool = True) -> None:
        super().__init__()
        hidden = int(dim * expansion)
        if hidden % 2:
            raise ValueError(f"dim * expansion must be even to split into v and u, got {hidden}")
        self.group_size, self.causal, self.shift_tokens = group_size, causal, shift_tokens
        self.to_hidden = FFConvM(dim, hidden, ScaleNorm(dim), conv_kernel_size, dropout, causal)
        self.to_qk = FFConvM(dim, qk_dim, ScaleNorm(dim), conv_kernel_size, dropout, causal)
        self.offset_scale = OffsetScale(qk_dim, heads=4)
        self.to_out = FFConvM(hidden // 2, dim, ScaleNorm(hidden // 2), conv_kernel_size, dropout, causal)
        self.attn_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, rotary: RotaryEmbedding,
                angles: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """``x [B, T, D]`` → ``[B, T, D]``; ``angles = rotary.angles(T)``."""
        h = token_shift(x) if self.shift_tokens else x
        vu = self.to_hidden(h)  # [B, T, 2E]: v then u
        qk = self.offset_scale(self.to_qk(h))  # [B, T, 4, S]
        cos, sin = angles
        qk = rotary.rotate(qk, cos[:, None], sin[:, None])
        quad_q, lin_q, quad_k, lin_k = qk.unbind(-2)
        att_v, att_u = self.attend(quad_q, lin_q, quad_k, lin_k, vu).chunk(2, dim=-1)
        v, u = vu.chunk(2, dim=-1)
        return x + self.to_out((att_u * v) * torch.sigmoid(att_v * u))

    def attend(self, quad_q: torch.Tensor, lin_q: torch.Tensor, quad_k: torch.Tensor,
               lin_k: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Joint local-quadratic + global-linear attention of ``values [B, T, V]`` with
        queries/keys ``[B, T, S]``. Returns ``[B, T, V]``."""
        batch, frames, _ = values.shape
        g = self.group_size
        pad = -frames % g
        if pad:
            # Zero queries/keys/values in the padding: they add nothing to either attention.
            quad_q, lin_q, quad_k, lin_k, values = (
                F.pad(t, (0, 0, 0, pad)) for t in (quad_q, lin_q, quad_k, lin_k, values))
        n_groups = (frames + pad) // g
        quad_q, lin_q, quad_k, lin_k, values = (
            t.reshape(batch, n_groups, g, t.shape[-1]) for t in (quad_q, lin_q, quad_k, lin_k, values))

        sim = quad_q @ quad_k.transpose(-1, -2) / g  # [B, G, g, g]
        weights = self.attn_dropout(F.relu(sim) ** 2)
        if self.causal:
            future = torch.ones(g, g, dtype=torch.bool, device=sim.device).triu(1)
            weights = weights.masked_fill(future, 0.0)
        out = weights @ values  # [B, G, g, V]

        if self.causal:
            # Each chunk sees the summed key-value products of the chunks before it.
            kv = lin_k.transpose(-1, -2) @ values / g  # [B, G, S, V]
            kv = F.pad(kv.cumsum(dim=1), (0, 0, 0, 0, 1, -1))
            out = out + lin_q @ kv
        else:
            flat_k = lin_k.reshape(batch, -1, lin_k.shape[-1])
            kv = flat_k.transpose(-1, -2) @ values.reshape(batch, -1, values.shape[-1]) / frames  # [B, S, V]
            out = out + (lin_q.reshape(batch, -1, lin_q.shape[-1]) @ kv).reshape(out.shape)
        return out.reshape(batch, n_groups * g, -1)[:, :frames]
