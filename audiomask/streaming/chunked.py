"""Chunked overlap-add inference for any model (causal or not, time-domain or STFT).

The mixture is cut into windows of ``window`` samples that overlap by ``overlap`` samples.
Each window is separated on its own; the source order of every window is aligned to the
output so far by correlation on the overlap (so speakers do not swap at a boundary), and the
overlap is cross-faded linearly. Working memory is bounded by the window, not the file.
"""

from __future__ import annotations

import torch

from audiomask.metrics import pit

DEFAULT_WINDOW_S = 10.0
DEFAULT_OVERLAP_S = 2.0


def correlation_matrix(est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Normalised correlation ``[B, n_est, n_ref]`` between ``est [B, n, T]`` and ``ref [B, n, T]``."""
    est = est - est.mean(-1, keepdim=True)
    ref = ref - ref.mean(-1, keepdim=True)
    num = est @ ref.transpose(-1, -2)
    den = est.norm(dim=-1).unsqueeze(-1) * ref.norm(dim=-1).unsqueeze(-2)
    return num / den.clamp_min(1e-8)


def window_starts(length: int, window: int, hop: int) -> list[int]:
    """Window starts covering ``length`` samples; the last window ends exactly at the end."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window, hop))
    return starts + [length - window]


@torch.inference_mode()
def separate_chunked(model: torch.nn.Module, mix: torch.Tensor, window: int | None = None,
                     overlap: int | None = None, progress: bool = False) -> torch.Tensor:
    """Separate ``mix [T]`` or ``[B, T]`` (at the model's rate) window by window.

    Args:
        window: window length in samples (default 10 s).
        overlap: samples shared by neighbouring windows (default 2 s); cross-faded.
        progress: show a progress bar over windows.

    Returns ``[n_src, T]`` / ``[B, n_src, T]``, like ``model(mix)``.
    """
    from tqdm import tqdm

    unbatched = mix.dim() == 1
    x = mix.unsqueeze(0) if unbatched else mix
    rate = model.sample_rate
    window = int(window or DEFAULT_WINDOW_S * rate)
    overlap = int(DEFAULT_OVERLAP_S * rate if overlap is None else overlap)
    if not 0 <= overlap < window:
        raise ValueError(f"overlap ({overlap}) must be in [0, window={window})")
    length = x.shape[-1]
    device = next(model.parameters()).device
    out = torch.zeros(x.shape[0], model.n_src, length)
    starts = window_starts(length, window, window - overlap)
    written_to = 0  # out[..., :written_to] holds the (faded) output so far
    for start in tqdm(starts, desc="windows", unit="win", disable=not progress or len(starts) < 2):
        end = min(length, start + window)
        est = model(x[:, start:end].to(device)).float().cpu()
        shared = max(0, written_to - start)
        if shared:
            est = align_sources(est, out[..., start:written_to])
            fade = torch.linspace(0.0, 1.0, shared + 2)[1:-1]
            out[..., start:written_to] = out[..., start:written_to] * (1 - fade) + est[..., :shared] * fade
        out[..., written_to:end] = est[..., shared:]
        written_to = end
    return out[0] if unbatched else out


def align_sources(est: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """Reorder the sources of ``est [B, C, W]`` so that its first ``shared`` samples correlate
    best with ``previous [B, C, shared]`` (the output already written for that stretch)."""
    perm, _, _ = pit(est[..., : previous.shape[-1]], previous, metric=correlation_matrix)
    return torch.gather(est, 1, perm.unsqueeze(-1).expand_as(est))
