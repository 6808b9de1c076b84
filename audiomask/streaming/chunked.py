"""Chunked overlap-add inference for any model (causal or not, time-domain or STFT).

The mixture is cut into windows of ``window`` samples that overlap by ``overlap`` samples.
Each window is separated on its own; the source order of every window is aligned to the
output so far by correlation on the overlap (so speakers do not swap at a boundary), and the
overlap is cross-faded linearly. Working memory is bounded by the window, not the file.

Correlation keeps the order across a boundary only while both speakers talk. In a long
recording where two speakers take turns, a model that hears one speaker alone is free to put
them on either output (Conv-TasNet tends to use the first), so speakers would swap at every
change of turn. For two sources, :func:`keep_speakers` then reassigns the output stretch by
stretch: the outputs are cut where their activity changes (a speaker starts or stops), every
stretch is described by a cheap speaker profile (its mean cepstrum: the spectral envelope),
two speaker profiles are learnt from the whole recording, and each stretch goes to the
speakers whose profiles it matches, with a pull towards the output each speaker mostly came
out of. It warns when the two profiles cannot be told apart.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
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
                     overlap: int | None = None, progress: bool = False,
                     track_speakers: bool = True) -> torch.Tensor:
    """Separate ``mix [T]`` or ``[B, T]`` (at the model's rate) window by window.

    Args:
        window: window length in samples (default 10 s).
        overlap: samples shared by neighbouring windows (default 2 s); cross-faded.
        progress: show a progress bar over windows.
        track_speakers: when the input spans several windows and the model has two sources,
            keep each speaker on one output across turns (:func:`keep_speakers`).

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
    if track_speakers and len(starts) > 1 and model.n_src == 2:
        for b in range(out.shape[0]):
            out[b] = keep_speakers(out[b], rate)
    return out[0] if unbatched else out


def align_sources(est: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """Reorder the sources of ``est [B, C, W]`` so that its first ``shared`` samples correlate
    best with ``previous [B, C, shared]`` (the output already written for that stretch)."""
    perm, _, _ = pit(est[..., : previous.shape[-1]], previous, metric=correlation_matrix)
    return torch.gather(est, 1, perm.unsqueeze(-1).expand_as(est))


# ------------------------------------------------------------------ speakers across turns
CEPSTRA = 20  # cepstral coefficients 1..20 of the log power spectrum: the spectral envelope
ACTIVE_DB = -35.0  # a frame is speech when within this of the loud frames (95th percentile)
MIN_SHARE = 0.1  # ... and it carries at least this share of the frame's energy (not leakage)
PRIOR_WEIGHT = 0.3  # pull (per second of speech) towards the output a speaker mostly came out of
OVERLAP_WEIGHT = 0.3  # weight of stretches where both outputs talk
CONTINUE_COST = 0.05  # cost of reassigning while an output keeps talking (ties carry the last)
MIN_GAIN = 0.1  # reorder only if it brings the scatter this much below the model's order
MIN_SEPARATION = 0.5  # profiles closer than this (mean squared standardised cepstra): warn, keep


def _frame_features(est: torch.Tensor, rate: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Per output and STFT frame (32 ms Hann, half overlap, frame ``n`` centred on sample
    ``n · hop``): energy ``[C, N]`` and cepstra ``[C, CEPSTRA, N]``. Computed ten seconds of
    frames at a time, so memory stays a small fraction of the signal's."""
    from scipy.fft import dct

    n_fft = 1 << int(round(math.log2(0.032 * rate)))
    hop = n_fft // 2
    window = torch.hann_window(n_fft)
    length = est.shape[-1]
    n_frames = length // hop + 1
    energy = np.empty((est.shape[0], n_frames), dtype=np.float64)
    cepstra = np.empty((est.shape[0], CEPSTRA, n_frames), dtype=np.float32)
    step = max(1, int(10 * rate / hop))
    for a in range(0, n_frames, step):
        n = min(step, n_frames - a)
        lo, hi = a * hop - n_fft // 2, (a + n - 1) * hop + n_fft // 2 + 1
        x = est[:, max(0, lo) : min(length, hi)].float()
        x = torch.nn.functional.pad(x, (max(0, -lo), max(0, hi - length)))
        power = torch.stft(x, n_fft, hop, window=window, center=False, return_complex=True
                           ).abs().square().numpy()[..., :n]  # C F n
        energy[:, a : a + n] = power.sum(1, dtype=np.float64)
        log_power = np.log(power + 1e-10 * power.mean() + 1e-30)
        cepstra[..., a : a + n] = dct(log_power, type=2, norm="ortho", axis=1)[:, 1 : CEPSTRA + 1]
    return energy, cepstra, hop


def _stretches(energy: np.ndarray, frames_per_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Speech activity ``[C, N]`` (gaps under 0.2 s closed, blips under 0.1 s removed) and the
    frame indices where the activity of any output changes (stretch bounds, with 0 and N)."""
    from scipy.ndimage import binary_closing, binary_opening

    loud = np.quantile(energy, 0.95) + 1e-30
    share = energy / (energy.sum(0, keepdims=True) + 1e-30)
    active = (energy > loud * 10 ** (ACTIVE_DB / 10)) & (share > MIN_SHARE)
    close, opening = np.ones(max(1, int(0.2 * frames_per_s))), np.ones(max(1, int(0.1 * frames_per_s)))
    active = np.stack([binary_opening(binary_closing(a, close), opening) for a in active])
    code = (active * (1 << np.arange(active.shape[0]))[:, None]).sum(0)
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(code)) + 1, [len(code)]])
    return active, bounds


def _viterbi(cost: np.ndarray, switch: np.ndarray) -> np.ndarray:
    """Cheapest state sequence for per-step state costs ``[S, P]`` and a cost ``switch[s]``
    for changing state between steps ``s`` and ``s + 1``."""
    steps, states = cost.shape
    total, back = cost[0].copy(), np.zeros((steps, states), dtype=np.int64)
    change = 1 - np.eye(states)
    for s in range(1, steps):
        trans = total[:, None] + switch[s - 1] * change
        back[s] = trans.argmin(0)
        total = trans.min(0) + cost[s]
    path = np.empty(steps, dtype=np.int64)
    path[-1] = total.argmin()
    for s in range(steps - 1, 0, -1):
        path[s - 1] = back[s, path[s]]
    return path


def _assign(z: np.ndarray, seconds: np.ndarray, profiles: np.ndarray, perms: list, switch: np.ndarray,
            iterations: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Alternate: the cheapest assignment of stretches to speakers given the profiles (and a
    pull towards the output each speaker mostly came out of), then the profiles given the
    assignment. Returns the path (a permutation index per stretch), the profiles, the seconds
    of output ``c`` given to speaker ``s`` and the scatter (seconds-weighted mean distance)."""
    n_out = z.shape[1]
    prior = np.full((n_out, n_out), 1.0 / n_out)  # P(speaker | output)
    for _ in range(iterations):
        dist = ((z[:, :, None] - profiles[None, None]) ** 2).mean(-1)
        penalised = dist - PRIOR_WEIGHT * np.log(prior)
        cost = np.stack([sum(seconds[:, c] * penalised[:, c, p[c]] for c in range(n_out)) for p in perms], 1)
        path = _viterbi(cost, switch)
        held = np.full((n_out, n_out), 1e-3)  # seconds of output c given to speaker s
        sums = np.zeros_like(profiles)
        scatter = 0.0
        for k, j in enumerate(path):
            for c, s in enumerate(perms[j]):
                held[c, s] += seconds[k, c]
                sums[s] += seconds[k, c] * z[k, c]
                scatter += seconds[k, c] * dist[k, c, s]
        profiles = sums / held.sum(0)[:, None]
        prior = held / held.sum(1, keepdims=True)
    return path, profiles, held, scatter / max(seconds.sum(), 1e-9)


def keep_speakers(est: torch.Tensor, rate: int, iterations: int = 8, fade_ms: float = 8.0
                  ) -> torch.Tensor:
    """Reorder two separated outputs ``est [2, T]`` stretch by stretch so that each speaker
    stays on one output (see the module docstring). Returns a tensor like ``est``; outputs
    with too little speech to judge are returned as they are."""
    n_out = est.shape[0]
    if n_out != 2:
        raise ValueError(f"keep_speakers handles two outputs, got {n_out}")
    energy, cepstra, hop = _frame_features(est, rate)
    active, bounds = _stretches(energy, rate / hop)
    n_st = len(bounds) - 1
    feats, seconds = np.zeros((n_st, n_out, CEPSTRA)), np.zeros((n_st, n_out))
    for k in range(n_st):
        a, b = bounds[k], bounds[k + 1]
        for c in range(n_out):
            m = active[c, a:b]
            if m.any():
                feats[k, c] = cepstra[c, :, a:b][:, m].mean(1)
                seconds[k, c] = m.sum() * hop / rate
    on = seconds > 0
    both = on.all(1)
    if seconds.sum() < 2.0:
        return est  # nothing to learn the voices from
    mean = np.average(feats[on], 0, seconds[on])
    z = (feats - mean) / (np.sqrt(np.average((feats[on] - mean) ** 2, 0, seconds[on])) + 1e-9)
    # where both talk, the outputs are less clean (leakage): they count for less
    seconds = seconds * np.where(both[:, None], OVERLAP_WEIGHT, 1.0)

    # Learn the two profiles (and the assignment) from several starts; keep the tightest.
    # Starts: the speaker axis (the main direction of the differences between the two outputs
    # where both talk: two different speakers there; without such stretches, the main
    # direction of all stretches) and the model's own order.
    if both.any():
        diff, weight = z[both, 0] - z[both, 1], np.minimum(*seconds[both].T)
    else:
        diff, weight = z[on], seconds[on]
    axis = np.linalg.eigh((diff * weight[:, None]).T @ diff)[1][:, -1]
    proj = z @ axis
    high = on & (proj > np.average(proj[on], weights=seconds[on]))
    starts = [(high, on & ~high), (on & (np.arange(n_out) == 0), on & (np.arange(n_out) == 1))]
    perms = list(itertools.permutations(range(n_out)))
    switch = np.where((on[1:] & on[:-1]).any(1), CONTINUE_COST, 0.0)
    best = None
    for first, second in starts:
        if not first.any() or not second.any():
            continue
        profiles = np.stack([np.average(z[first], 0, seconds[first]), np.average(z[second], 0, seconds[second])])
        path, profiles, held, scatter = _assign(z, seconds, profiles, perms, switch, iterations)
        if best is None or scatter < best[3]:
            best = (path, profiles, held, scatter)
    if best is None:
        warnings.warn("audiomask: too little speech on the outputs to keep the speakers apart across "
                      "turns; the outputs may swap where one of them pauses", stacklevel=2)
        return est
    path, profiles, held, scatter = best
    if ((profiles[0] - profiles[1]) ** 2).mean() < MIN_SEPARATION:
        warnings.warn("audiomask: the two speakers sound too alike to keep apart across turns; "
                      "the outputs may swap where one of them pauses", stacklevel=2)
        return est
    # The model's own order, one speaker per output, explains the stretches about as well:
    # it was right (the model kept the speakers apart), keep it.
    kept = np.stack([np.average(z[:, c], 0, seconds[:, c]) for c in range(n_out)])
    kept_scatter = sum((seconds[:, c] * ((z[:, c] - kept[c]) ** 2).mean(-1)).sum() for c in range(n_out))
    if scatter > (1 - MIN_GAIN) * kept_scatter / seconds.sum():
        return est
    # name the speakers after the output each mostly came out of
    swapped = np.array([perms[j][0] == 1 for j in path])
    if held[0, 1] + held[1, 0] > held[0, 0] + held[1, 1]:
        swapped = ~swapped
    if not swapped.any():
        return est
    edges = bounds * hop  # stretch k is est[:, edges[k]:edges[k + 1]]
    edges[-1] = est.shape[-1]
    out = est.clone()
    for k in np.flatnonzero(swapped):
        out[:, edges[k] : edges[k + 1]] = est[:, edges[k] : edges[k + 1]].flip(0)
    # cross-fade where the order changes
    half = max(1, int(fade_ms * 1e-3 * rate) // 2)
    for k in np.flatnonzero(swapped[1:] != swapped[:-1]) + 1:
        a, b = max(0, edges[k] - half), min(est.shape[-1], edges[k] + half)
        ramp = torch.linspace(0.0, 1.0, b - a + 2, dtype=est.dtype)[1:-1]
        before = est[:, a:b].flip(0) if swapped[k - 1] else est[:, a:b]
        after = est[:, a:b].flip(0) if swapped[k] else est[:, a:b]
        out[:, a:b] = before * (1 - ramp) + after * ramp
    return out
