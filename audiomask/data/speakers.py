"""Speaker bookkeeping for corpora named like LibriSpeech (``SPEAKER-CHAPTER-UTT.flac``)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Iterable

AUDIO_EXTENSIONS = (".flac", ".wav", ".ogg", ".aiff", ".aif")


def speaker_of(path: str | Path) -> str:
    """Speaker id of a file: the part of the stem before the first ``-`` (LibriSpeech, WSJ0
    style ids are the first 3 characters, but LibriSpeech naming is what dynamic mixing uses)."""
    return Path(path).stem.split("-")[0]


def find_audio(folder: str | Path) -> list[Path]:
    """All audio files under ``folder`` (recursively), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: speech folder not found")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
    if not files:
        raise FileNotFoundError(f"{folder}: no audio files ({', '.join(AUDIO_EXTENSIONS)})")
    return files


def audio_files(spec: str | Path | Iterable[str | Path]) -> list[Path]:
    """Files named by ``spec``: a folder (all audio under it, see :func:`find_audio`), one
    file, or a list of files."""
    if isinstance(spec, (str, Path)):
        p = Path(spec)
        return find_audio(p) if p.is_dir() else [p]
    return [Path(f) for f in spec]


def split_by_speaker(files: Iterable[str | Path], n_valid_speakers: int, seed: int = 0
                     ) -> tuple[list[Path], list[Path]]:
    """Split files into (train, validation) so that no speaker is on both sides.

    The ``n_valid_speakers`` validation speakers are drawn with a fixed ``seed`` from the
    sorted speaker ids, so the split is the same on every machine.
    """
    files = [Path(f) for f in files]
    speakers = sorted({speaker_of(f) for f in files})
    if not 0 < n_valid_speakers < len(speakers):
        raise ValueError(f"n_valid_speakers must be in 1..{len(speakers) - 1}, got {n_valid_speakers}")
    valid = set(random.Random(seed).sample(speakers, n_valid_speakers))
    return ([f for f in files if speaker_of(f) not in valid],
            [f for f in files if speaker_of(f) in valid])
