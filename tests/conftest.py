"""Shared fixtures: real speech from ../shared/data and small helpers."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest
import soundfile as sf
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
LIBRI = SHARED_DATA / "librispeech-mini"


def require_peer(module: str):
    """Import a peer toolkit used only in tests (e.g. asteroid). Absent: skip, unless
    ``AUDIOMASK_REQUIRE_PEERS=1`` (set by the README test command), where it is an error."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        if os.environ.get("AUDIOMASK_REQUIRE_PEERS") == "1":
            raise
        pytest.skip(f"peer {module} not installed ({e})")


@pytest.fixture(scope="session")
def speech_files() -> list[Path]:
    if not LIBRI.is_dir():
        pytest.skip(f"real speech not found at {LIBRI}")
    return sorted(LIBRI.glob("*.flac"))


@pytest.fixture(scope="session")
def two_speaker_mixture(speech_files, tmp_path_factory) -> tuple[Path, torch.Tensor, int]:
    """A 3 s real two-speaker mixture at 16 kHz written to a wav; returns (path, sources, rate)."""
    a, rate = sf.read(speech_files[0], dtype="float32")
    b, _ = sf.read(speech_files[1], dtype="float32")
    n = 3 * rate
    src = torch.stack([torch.from_numpy(a[rate : rate + n]), torch.from_numpy(b[rate : rate + n])])
    src = src / src.abs().amax(dim=1, keepdim=True) * 0.4
    path = tmp_path_factory.mktemp("mix") / "mix.wav"
    sf.write(path, src.sum(0).numpy(), rate, subtype="FLOAT")
    return path, src, rate
