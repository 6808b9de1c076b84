"""Figures (matplotlib, the ``plot`` extra), rendered off-screen and written atomically."""

from __future__ import annotations

import io
import os
from pathlib import Path

import torch

from audiomask.fileio import atomic_write_bytes

PLOT_EXTRA_HINT = "matplotlib is not installed (pip install 'audiomask[plot]')"


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def spectrograms_png(path: str | os.PathLike, signals: dict[str, torch.Tensor], sample_rate: int,
                     n_fft: int = 512) -> Path:
    """One log-magnitude spectrogram panel per named ``[T]`` signal, stacked, on a shared dB
    scale (top 80 dB of the loudest panel)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    window = torch.hann_window(n_fft)
    specs = {}
    for name, wav in signals.items():
        spec = torch.stft(wav.float(), n_fft, n_fft // 4, window=window, return_complex=True).abs()
        specs[name] = 20 * torch.log10(spec + 1e-8)
    top = max(float(s.max()) for s in specs.values())
    fig = Figure(figsize=(9, 2.2 * len(specs)), dpi=100)
    FigureCanvasAgg(fig)
    duration = max(w.shape[-1] for w in signals.values()) / sample_rate
    axes = fig.subplots(len(specs), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (name, spec) in zip(axes, specs.items()):
        image = ax.imshow(spec.numpy(), origin="lower", aspect="auto", cmap="magma", vmin=top - 80, vmax=top,
                          extent=(0, duration, 0, sample_rate / 2000))
        ax.set_ylabel("kHz")
        ax.set_title(name, loc="left", fontsize=10)
    axes[-1].set_xlabel("time (s)")
    fig.colorbar(image, ax=list(axes), label="dB", fraction=0.02)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return atomic_write_bytes(path, buf.getvalue())
