"""Temporal convolutional network (TCN) masker of Conv-TasNet.

Luo & Mesgarani, "Conv-TasNet: Surpassing ideal time–frequency magnitude masking for speech
separation", IEEE/ACM TASLP 27(8), 2019 — Fig. 1(C) and Table I. Module layout and numerics
follow the authors' code (naplab ``utility/models.py``): every conv has a bias, the
depthwise conv is followed by PReLU then the norm, the last block also has a residual
output, the masks come from the summed skip connections.

Paper symbols: N (encoder filters, ``in_chan``), B (bottleneck ``bn_chan``), H (conv block
channels ``hid_chan``), Sc (skip channels ``skip_chan``), P (``conv_kernel_size``),
X (blocks per repeat ``n_blocks``), R (repeats ``n_repeats``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from audiomask import kernels
from audiomask.maskers.tcn import cpu_inference, cpu_training
from audiomask.maskers.tcn.dispatch import select_path
from audiomask.maskers.tcn.stream_step import tcn_step
from audiomask.maskers.tcn.stream_step_c import NativeStreamPlan, native_step
from audiomask.maskers.tcn.dispatch import MASK_ACTIVATIONS, tcn_weights
from audiomask.nn.history import history_buffer
from audiomask.nn.norms import CumulativeLayerNorm, is_causal_norm, make_norm


class DepthwiseTCNBlock(nn.Module):
    """1-D conv block: 1×1 conv B→H, PReLU, norm, depthwise conv (kernel P, dilation d),
    PReLU, norm, then 1×1 residual H→B and 1×1 skip H→Sc.

    Shapes: ``[batch, B, frames]`` → (residual ``[batch, B, frames]``,
    skip ``[batch, Sc, frames]`` or ``None`` when ``skip_chan`` is 0).
    Causal blocks pad ``(P-1)·d`` frames on the left only; non-causal ones ``(P-1)·d/2``
    on each side.
    """

    def __init__(self, bn_chan: int, hid_chan: int, skip_chan: int, kernel_size: int,
                 dilation: int, norm: str, causal: bool) -> None:
        super().__init__()
        if not causal and (kernel_size - 1) * dilation % 2:
            raise ValueError(f"a non-causal TCN needs an odd kernel size, got {kernel_size}")
        self.causal, self.dilation, self.kernel_size = causal, dilation, kernel_size
        #: frames of left context the depthwise conv needs: ``(P - 1) · d``
        self.context = (kernel_size - 1) * dilation
        #: the depthwise conv's zero padding (left, right)
        self.padding = (self.context, 0) if causal else (self.context // 2, self.context // 2)
        self.in_conv = nn.Conv1d(bn_chan, hid_chan, 1)
        self.in_act = nn.PReLU()
        self.in_norm = make_norm(norm, hid_chan)
        self.dw_conv = nn.Conv1d(hid_chan, hid_chan, kernel_size, dilation=dilation, groups=hid_chan)
        self.dw_act = nn.PReLU()
        self.dw_norm = make_norm(norm, hid_chan)
        self.res_conv = nn.Conv1d(hid_chan, bn_chan, 1)
        self.skip_conv = nn.Conv1d(hid_chan, skip_chan, 1) if skip_chan else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        y = self.in_norm(self.in_act(self.in_conv(x)))
        y = self.dw_norm(self.dw_act(self.dw_conv(F.pad(y, self.padding))))
        skip = self.skip_conv(y) if self.skip_conv is not None else None
        return self.res_conv(y), skip


class TCNMasker(nn.Module):
    """Conv-TasNet separator: norm → 1×1 bottleneck N→B → X·R blocks → PReLU → 1×1 Sc→C·N → mask.

    Args:
        in_chan: N, channels of the encoder representation.
        n_src: C, number of masks.
        bn_chan: B. hid_chan: H. skip_chan: Sc (0: no skip path, masks from the residual path).
        conv_kernel_size: P. n_blocks: X (dilations 1, 2, …, 2^(X-1)). n_repeats: R.
        norm: ``"gLN"``, ``"cLN"`` (cumulative) or ``"chanLN"``; the input norm uses it too.
        causal: left-only padding; requires a causal norm.
        mask_act: ``"sigmoid"`` (paper), ``"relu"``, ``"softmax"`` (across sources) or ``"linear"``.

    Shapes: ``[batch, N, frames]`` → masks ``[batch, C, N, frames]``.
    """

    def __init__(self, in_chan: int, n_src: int, bn_chan: int = 128, hid_chan: int = 512,
                 skip_chan: int = 128, conv_kernel_size: int = 3, n_blocks: int = 8,
                 n_repeats: int = 3, norm: str = "gLN", causal: bool = False,
                 mask_act: str = "sigmoid") -> None:
        super().__init__()
        if causal and not is_causal_norm(norm):
            raise ValueError(f"a causal TCN needs a causal norm ('cLN' or 'chanLN'), got {norm!r}")
        if mask_act not in MASK_ACTIVATIONS:
            raise ValueError(f"unknown mask activation {mask_act!r}; choose one of {tuple(MASK_ACTIVATIONS)}")
        self.in_chan, self.n_src, self.causal, self.mask_act = in_chan, n_src, causal, mask_act
        self.input_norm = make_norm(norm, in_chan)
        self.bottleneck = nn.Conv1d(in_chan, bn_chan, 1)
        self.blocks = nn.ModuleList(
            DepthwiseTCNBlock(bn_chan, hid_chan, skip_chan, conv_kernel_size, 2**x, norm, causal)
            for _ in range(n_repeats)
            for x in range(n_blocks)
        )
        self.out_act = nn.PReLU()
        self.out_conv = nn.Conv1d(skip_chan or bn_chan, n_src * in_chan, 1)

    @property
    def receptive_field(self) -> int:
        """Frames of input that influence one output frame: ``1 + Σ (P-1)·d``."""
        return 1 + sum(block.context for block in self.blocks)

    def forward(self, rep: torch.Tensor) -> torch.Tensor:
        path = select_path(self, rep)
        if path == "cpu_inference":  # same result, fewer memory passes
            scores = torch.stack([cpu_inference.tcn_scores(self, cpu_inference.tcn_features(self, r.t())) for r in rep])
            return self._activate(scores.view(rep.shape[0], -1, self.n_src, self.in_chan).permute(0, 2, 3, 1))
        if path == "cpu_training":  # same gradients, ~10x less memory
            return self._masks(cpu_training.tcn_features(self, rep), rep.shape)
        return self._masks(self.module_features(rep, triton=path == "triton"), rep.shape)

    def module_features(self, rep: torch.Tensor, triton: bool = False) -> torch.Tensor:
        """The TCN's output features through its modules (autograd): the skip sum, or the last
        block's output without skip connections; ``[B, N, K]`` → ``[B, Sc or Bc, K]``. With
        ``triton``, each block runs on the fused kernels (:func:`audiomask.kernels.tcn_block_forward`)."""
        x = self.bottleneck(self.input_norm(rep))
        skip_sum = None
        for block in self.blocks:
            residual, skip = kernels.tcn_block_forward(block, x) if triton else block(x)
            x = x + residual
            if skip is not None:
                skip_sum = skip if skip_sum is None else skip_sum + skip
        return x if skip_sum is None else skip_sum

    def grown_state_dict(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The state dict of this masker started from ``state``, that of a shallower TCN of the
        same widths (fewer repeats R, or fewer blocks in all): its tensors, plus this masker's
        own for the blocks it lacks, whose residual and skip 1×1 convs are zero, so this
        masker computes exactly what the shallower one did and training grows into the added
        depth. The shallower model's last residual conv, which never reached its output, is
        zero too (it now feeds the added blocks). ``state`` has this module's keys (no
        ``masker.`` prefix); raises :class:`ValueError` naming the tensors that do not fit."""
        from audiomask.state_dicts import state_dict_problems

        n_old = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
        own = self.state_dict()
        kept = {k: v.shape for k, v in own.items() if not (k.startswith("blocks.") and int(k.split(".")[1]) >= n_old)}
        problems = state_dict_problems(kept, state)
        if problems or not 0 < n_old < len(self.blocks):
            raise ValueError(f"not a shallower TCN of the same widths ({n_old} of {len(self.blocks)} "
                             "blocks): " + "; ".join(problems))
        zeroed = [f"blocks.{n_old - 1}.res_conv."] + [f"blocks.{i}.{conv}." for i in range(n_old, len(self.blocks))
                                                       for conv in ("res_conv", "skip_conv")]
        return {k: torch.zeros_like(v) if k.startswith(tuple(zeroed)) else v for k, v in {**own, **state}.items()}

    def causal_state_dict(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The state dict of this causal masker started from ``state``, that of a non-causal TCN
        of the same shape (gLN → cLN: the norms' gains and biases kept). A non-causal depthwise
        kernel of P taps reads frames ``k + j·d``, ``j = −(P−1)/2 … (P−1)/2``, a causal one
        ``j = −(P−1) … 0``: each kernel moves (P−1)/2 taps into the past, so its centre tap still
        reads the present frame, and its future taps are added to the present one. Every other
        tensor is copied. Not the same function (the future is gone), but a start that separates:
        the bundled ``convtasnet-robust16k`` mapped this way separates 20 held-out clean 16 kHz
        mixtures by 1.3 dB SI-SDRi before training (−2.4 dB with the taps left in place).
        ``state`` has this module's keys (no ``masker.`` prefix), for all of its blocks or the
        first ones (a shallower TCN, to be grown by :meth:`grown_state_dict`)."""
        from audiomask.state_dicts import state_dict_problems

        expected = {k: v.shape for k, v in self.state_dict().items() if not k.startswith("blocks.") or k in state}
        problems = state_dict_problems(expected, state)
        if problems or not self.causal:
            raise ValueError("not a non-causal TCN of this causal masker's shape: "
                             + ("; ".join(problems) or "this masker is not causal"))
        out = dict(state)
        for key in [k for k in state if k.startswith("blocks.") and k.endswith(".dw_conv.weight")]:
            old = state[key]  # [H, 1, P]
            half = (old.shape[-1] - 1) // 2
            new = torch.zeros_like(old)
            new[..., half:] = old[..., :half + 1]
            new[..., -1] += old[..., half + 1:].sum(-1)
            out[key] = new
        return out

    # -- streaming (causal TCNs) ----------------------------------------------------------
    def init_state(self, batch: int, device: torch.device | None = None) -> "TCNStreamState":
        """Streaming state of a causal TCN (see :mod:`audiomask.maskers.tcn.stream_step`)."""
        if not self.causal:
            raise ValueError("only a causal TCN can stream exactly; use chunked inference")
        return TCNStreamState(self, batch, device)

    def step(self, rep: torch.Tensor, state: "TCNStreamState") -> tuple[torch.Tensor, "TCNStreamState"]:
        """Masks ``[B, C, N, F]`` for the next ``F`` frames ``rep [B, N, F]`` and the new state.

        Equals :meth:`forward` over the whole signal restricted to these frames, with work
        proportional to ``F`` (:func:`~audiomask.maskers.tcn.stream_step.tcn_step`)."""
        s = state
        if s.native is not None and rep.shape[-1] > 0:  # the C kernels: all blocks in one call
            return native_step(rep, s.native, self.n_src, self.mask_act), s
        masks, s.norm_states, s.buffers, s.ends = tcn_step(
            rep, s.head, s.blocks, s.norm, self.n_src, self.mask_act, s.norm_states, s.buffers, s.ends)
        return masks, s

    def _masks(self, features: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        scores = self.out_conv(self.out_act(features))
        return self._activate(scores.view(shape[0], self.n_src, self.in_chan, shape[-1]))

    def _activate(self, scores: torch.Tensor) -> torch.Tensor:
        """Mask activation over scores ``[B, C, N, F]`` (or frames-major ``[T, C, N]``)."""
        return MASK_ACTIVATIONS[self.mask_act](scores)


class TCNStreamState:
    """Everything a causal TCN carries between streaming calls: its weights
    (:mod:`~audiomask.maskers.tcn.dispatch`, read when the stream starts), the norms' running
    statistics and each depthwise conv's history buffer."""

    @torch.no_grad()
    def __init__(self, masker: TCNMasker, batch: int, device: torch.device | None) -> None:
        self.norm = "cLN" if isinstance(masker.input_norm, CumulativeLayerNorm) else "chanLN"
        self.head, self.blocks = tcn_weights(masker)
        self.buffers, self.ends = [], []
        self.norm_states = [masker.input_norm.init_state(batch, device)]
        for b in masker.blocks:
            buffer, end = history_buffer(batch, b.context, b.dw_conv.in_channels, device)
            self.buffers.append(buffer)
            self.ends.append(end)
            self.norm_states += [b.in_norm.init_state(batch, device), b.dw_norm.init_state(batch, device)]
        applies = NativeStreamPlan.applies(self.norm, self.head, self.blocks)
        self.native = (NativeStreamPlan(self.head, self.blocks, self.norm_states, self.buffers, self.ends)
                       if applies else None)
