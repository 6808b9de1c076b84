"""Fixed mixtures listed in a manifest (CSV or JSON) or laid out in a directory.

Manifest formats
----------------
CSV with a header row::

    id,mix,s1,s2,noise            # `id` and `noise` are optional; s3, s4, … for more sources
    utt1,mix/utt1.wav,s1/utt1.wav,s2/utt1.wav,noise/utt1.wav

JSON: a list of objects with the same keys::

    [{"id": "utt1", "mix": "mix/utt1.wav", "s1": "s1/utt1.wav", "s2": "s2/utt1.wav"}]

Relative paths are relative to the manifest's folder; absolute paths are used as they are.
Source columns must be ``s1 … sK`` without gaps (``K`` = number of sources, any ``K >= 1``);
other columns are ignored. An empty ``noise`` cell means "no noise file for this row".
Without an ``id`` column the id is the mixture's file stem (or its path relative to the
manifest's folder when stems repeat).

Directory layout (:func:`scan_mixture_dir`)::

    root/mix/NAME.wav   root/s1/NAME.wav   root/s2/NAME.wav   [root/s3/…]   [root/noise/NAME.wav]

Errors
------
A bad manifest or layout raises :class:`ManifestError` (a ``ValueError``) with one line
that names the manifest or folder and the offending files (with a count). A bad audio file
raises :class:`audiomask.audio.AudioError` (``"FILE: problem"``) when it is read.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from audiomask.audio import AudioError, read_audio
from audiomask.data.speakers import AUDIO_EXTENSIONS

__all__ = ["ManifestError", "MixtureEntry", "MixtureExample", "MixtureDataset", "read_manifest",
           "scan_mixture_dir", "load_entries"]

_SOURCE_KEY = re.compile(r"^s(\d+)$")
_MAX_NAMED = 5  # files named in one error message before "… and N more"


class ManifestError(ValueError):
    """A manifest or mixture folder that cannot be used; ``str(err)`` is one line naming it."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


@dataclass(frozen=True)
class MixtureEntry:
    """One listed mixture: its id, the mixture file, one file per source, optional noise."""

    id: str
    mix: Path
    sources: tuple[Path, ...]
    noise: Path | None = None

    @property
    def n_src(self) -> int:
        return len(self.sources)

    def files(self) -> list[tuple[str, Path]]:
        """``(role, path)`` for every file: ``mix``, ``s1`` …, ``noise``."""
        out = [("mix", self.mix)] + [(f"s{i + 1}", p) for i, p in enumerate(self.sources)]
        return out + ([("noise", self.noise)] if self.noise is not None else [])


@dataclass
class MixtureExample:
    """One loaded example (see :meth:`MixtureDataset.example`)."""

    id: str
    mix: torch.Tensor  # [T]
    sources: torch.Tensor  # [n_src, T]
    noise: torch.Tensor | None  # [T] or None
    sample_rate: int


def _name_list(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_MAX_NAMED])
    more = len(items) - _MAX_NAMED
    return shown + (f", … and {more} more" if more > 0 else "")


def _source_keys(keys: Iterable[str], where: str) -> list[str]:
    """The ``s1 … sK`` keys among ``keys``, checked for gaps."""
    numbers = sorted(int(m.group(1)) for k in keys if (m := _SOURCE_KEY.match(k)))
    if not numbers:
        raise ManifestError(f"{where}: no source columns; expected mix,s1,s2[,s3…][,noise]")
    if numbers != list(range(1, len(numbers) + 1)):
        have = ", ".join(f"s{n}" for n in numbers)
        raise ManifestError(f"{where}: source columns must be s1, s2, … without gaps, got {have}")
    return [f"s{n}" for n in numbers]


def _unique_ids(entries: list[MixtureEntry], base: Path, explicit: bool, where: str) -> list[MixtureEntry]:
    ids = [e.id for e in entries]
    if len(set(ids)) == len(ids):
        return entries
    if explicit:
        seen, dups = set(), []
        for i in ids:
            if i in seen and i not in dups:
                dups.append(i)
            seen.add(i)
        raise ManifestError(f"{where}: {len(dups)} duplicate id(s): {_name_list(dups)}")
    # Stems repeat: use the mixture path relative to the manifest folder instead.
    out = []
    for e in entries:
        try:
            rel = e.mix.relative_to(base)
        except ValueError:
            rel = e.mix
        out.append(MixtureEntry(rel.with_suffix("").as_posix(), e.mix, e.sources, e.noise))
    return _unique_ids(out, base, True, where)


def _check_files_exist(entries: Sequence[MixtureEntry], where: str) -> None:
    missing = [os.path.normpath(p) for e in entries for _, p in e.files() if not p.is_file()]
    if missing:
        raise ManifestError(f"{where}: {len(missing)} listed file(s) not found: {_name_list(missing)}")


def _rows_to_entries(rows: list[tuple[str, dict[str, Any]]], base: Path, where: str,
                     keys: Sequence[str] | None = None) -> list[MixtureEntry]:
    """``rows``: ``(location, record)`` pairs, location like ``"line 3"`` / ``"entry 2"``."""
    if not rows:
        raise ManifestError(f"{where}: no mixtures listed")
    rows = [(loc, {str(k).strip().lower(): v for k, v in rec.items() if k is not None}) for loc, rec in rows]
    explicit_ids = False
    entries = []
    first_src: list[str] | None = None
    for loc, rec in rows:
        src_keys = _source_keys(keys if keys is not None else rec.keys(), f"{where} ({loc})")
        if first_src is None:
            first_src = src_keys
        elif src_keys != first_src:
            raise ManifestError(f"{where}: {loc} has {len(src_keys)} sources, the first mixture has {len(first_src)}")

        def path_of(key: str, required: bool = True) -> Path | None:
            value = rec.get(key)
            value = "" if value is None else value.strip() if isinstance(value, str) else value
            if not isinstance(value, str):
                raise ManifestError(f"{where}: {loc}: '{key}' must be a file path, got {type(value).__name__}")
            if not value:
                if required:
                    raise ManifestError(f"{where}: {loc}: empty or missing '{key}'")
                return None
            return base / Path(value).expanduser()

        mix = path_of("mix")
        sources = tuple(path_of(k) for k in src_keys)
        noise = path_of("noise", required=False)
        raw_id = rec.get("id")
        raw_id = "" if raw_id is None else str(raw_id).strip()
        explicit_ids = explicit_ids or bool(raw_id)
        entries.append(MixtureEntry(raw_id or mix.stem, mix, sources, noise))
    if explicit_ids and any(not str(r.get("id") or "").strip() for _, r in rows):
        raise ManifestError(f"{where}: the id column is empty on some rows; give every row an id or none")
    entries = _unique_ids(entries, base, explicit_ids, where)
    _check_files_exist(entries, where)
    return entries


def read_manifest(path: str | os.PathLike) -> list[MixtureEntry]:
    """Read a CSV (``.csv``/``.tsv`` by extension, or any non-JSON file) or JSON manifest.

    Returns the entries in file order with absolute-or-manifest-relative paths resolved.
    Raises :class:`ManifestError` (one line) for a missing/unparsable manifest, missing
    columns, gaps in ``s1 … sK``, differing source counts, duplicate ids, or listed files
    that do not exist (all of them named, with a count).
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    base = path.parent
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(f"{path}: cannot read manifest ({e})") from None
    if path.suffix.lower() == ".json" or text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ManifestError(f"{path}: invalid JSON ({e})") from None
        if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
            raise ManifestError(f"{path}: a JSON manifest must be a list of objects with keys mix, s1, s2, …")
        rows = [(f"entry {i + 1}", d) for i, d in enumerate(data)]
        return _rows_to_entries(rows, base, str(path))

    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.DictReader(text.splitlines(), delimiter=delimiter, skipinitialspace=True)
    header = [h.strip().lower() for h in (reader.fieldnames or []) if h is not None]
    if not header:
        raise ManifestError(f"{path}: empty manifest; expected a header mix,s1,s2[,s3…][,noise]")
    if "mix" not in header:
        raise ManifestError(f"{path}: no 'mix' column in header {','.join(header)}; "
                            "expected mix,s1,s2[,s3…][,noise]")
    src_keys = _source_keys(header, str(path))
    rows = []
    for rec in reader:
        if all(v is None or not str(v).strip() for k, v in rec.items() if k is not None):
            continue  # blank line
        if None in rec:  # more cells than header fields
            raise ManifestError(f"{path}: line {reader.line_num} has more cells than the header has columns")
        rows.append((f"line {reader.line_num}", rec))
    return _rows_to_entries(rows, base, str(path), keys=src_keys)


def scan_mixture_dir(root: str | os.PathLike) -> list[MixtureEntry]:
    """Entries for ``root/mix/NAME`` with ``root/s1/NAME``, ``root/s2/NAME``, … (and
    optionally ``root/noise/NAME``), sorted by name; id = the file stem.

    Any audio extension libsndfile reads is accepted (``.wav``, ``.flac``, …); hidden files
    are skipped. Every mixture must have a file of the same name in every ``sK/`` folder and
    (when present) in ``noise/``, and those folders may hold no other files: otherwise one
    :class:`ManifestError` lists the missing and unmatched files by name, with counts.
    """
    root = Path(root)
    if not root.is_dir():
        raise ManifestError(f"{root}: mixture folder not found")

    def audio_names(folder: Path) -> set[str]:
        return {p.name for p in folder.iterdir()
                if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in AUDIO_EXTENSIONS}

    mix_dir = root / "mix"
    if not mix_dir.is_dir():
        raise ManifestError(f"{root}: no mix/ folder; expected mix/, s1/, s2/, … holding the same file names")
    dirs = [p.name for p in root.iterdir() if p.is_dir() and _SOURCE_KEY.match(p.name)]
    if not dirs:
        raise ManifestError(f"{root}: no source folders s1/, s2/, … next to mix/")
    src_keys = _source_keys(dirs, str(root))
    names = audio_names(mix_dir)
    if not names:
        raise ManifestError(f"{root}: mix/ holds no audio files ({', '.join(AUDIO_EXTENSIONS)})")
    folders = src_keys + (["noise"] if (root / "noise").is_dir() else [])
    missing, extra = [], []
    for folder in folders:
        have = audio_names(root / folder)
        missing += [f"{folder}/{n}" for n in sorted(names - have)]
        extra += [f"{folder}/{n}" for n in sorted(have - names)]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing: {_name_list(missing)}")
        if extra:
            parts.append(f"{len(extra)} without a mixture in mix/: {_name_list(extra)}")
        raise ManifestError(f"{root}: mixture files do not match across mix/, {'/, '.join(folders)}/ "
                            f"({'; '.join(parts)})")
    stems = [Path(n).stem for n in sorted(names)]
    noise_dir = root / "noise" if "noise" in folders else None
    entries = [MixtureEntry(Path(n).stem if stems.count(Path(n).stem) == 1 else n, mix_dir / n,
                            tuple(root / k / n for k in src_keys),
                            noise_dir / n if noise_dir is not None else None)
               for n in sorted(names)]
    return entries


def load_entries(data: str | os.PathLike | Sequence[MixtureEntry]) -> list[MixtureEntry]:
    """A manifest file, a mixture folder (see :func:`scan_mixture_dir`) or entries → entries."""
    if isinstance(data, (str, os.PathLike)):
        p = Path(data)
        if p.is_dir():
            return scan_mixture_dir(p)
        if p.is_file():
            return read_manifest(p)
        raise ManifestError(f"{p}: not found (give a manifest .csv/.json or a folder with mix/, s1/, s2/, …)")
    entries = list(data)
    if not entries or not all(isinstance(e, MixtureEntry) for e in entries):
        raise ManifestError("expected a manifest path, a mixture folder or a non-empty list of MixtureEntry")
    return entries


class MixtureDataset(Dataset):
    """Fixed mixtures with their reference sources, from a manifest or a mixture folder.

    Args:
        data: manifest (``.csv``/``.json``), folder with ``mix/ s1/ s2/ …``, or a list of
            :class:`MixtureEntry`.
        sample_rate: rate of the returned signals; files at other rates are resampled
            (soxr, via :func:`~audiomask.audio.read_audio`). ``None``: the files' own rate
            (the files of one mixture must then share it).
        segment: crop length in seconds; ``None`` returns whole utterances. The crop start
            of example ``i`` is drawn from ``numpy.random.default_rng((seed, i))`` (the same
            crop every time); utterances shorter than the segment are zero-padded at the end.
        seed: base seed for the crops.
        n_src: expected number of sources (checked); ``None``: inferred from the data.
        downmix: average multi-channel files to mono (otherwise they are refused).

    Items: ``(mix [T], sources [n_src, T])`` float32. ``utterance_id(i)`` / ``ids`` give the
    ids; :meth:`example` also returns the noise (when listed) and the rate. All files of one
    mixture must have the same length (after resampling), else :class:`AudioError`.
    """

    def __init__(self, data: str | os.PathLike | Sequence[MixtureEntry], sample_rate: int | None = None,
                 segment: float | None = None, seed: int = 0, n_src: int | None = None,
                 downmix: bool = False) -> None:
        self.entries = load_entries(data)
        counts = sorted({e.n_src for e in self.entries})
        if len(counts) != 1:
            raise ManifestError(f"mixtures have different numbers of sources: {counts}")
        if n_src is not None and counts[0] != n_src:
            raise ManifestError(f"expected {n_src} sources per mixture, the data has {counts[0]}")
        if sample_rate is not None and sample_rate <= 0:
            raise ValueError(f"sample_rate must be > 0, got {sample_rate}")
        if segment is not None and segment <= 0:
            raise ValueError(f"segment must be > 0 seconds, got {segment}")
        self.n_src = counts[0]
        self.sample_rate = sample_rate
        self.segment = segment
        self.seed = seed
        self.downmix = downmix
        self.source = data if isinstance(data, (str, os.PathLike)) else None

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def ids(self) -> list[str]:
        return [e.id for e in self.entries]

    def utterance_id(self, index: int) -> str:
        return self.entries[index].id

    def with_sample_rate(self, sample_rate: int | None) -> "MixtureDataset":
        """The same mixtures (and crops) returned at another rate."""
        return MixtureDataset(self.entries, sample_rate, self.segment, self.seed, self.n_src, self.downmix)

    def _read(self, path: Path) -> tuple[torch.Tensor, int]:
        wav, rate = read_audio(path, sample_rate=self.sample_rate, channels=None if self.downmix else 1,
                               downmix=self.downmix)
        return wav[0], rate

    def example(self, index: int) -> MixtureExample:
        """Example ``index`` with its id, noise (``None`` when not listed) and sample rate."""
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        index = index % len(self)
        entry = self.entries[index]
        mix, rate = self._read(entry.mix)
        signals = [self._read(p) for p in entry.sources]
        noise = self._read(entry.noise) if entry.noise is not None else None
        for (role, path), (wav, r) in zip(entry.files()[1:], signals + ([noise] if noise else [])):
            if r != rate:
                raise AudioError(path, f"is at {r} Hz but the mixture {entry.mix} is at {rate} Hz "
                                       "(pass sample_rate= to resample all files)")
            if wav.shape[-1] != mix.shape[-1]:
                raise AudioError(path, f"has {wav.shape[-1]} samples but the mixture {entry.mix} has "
                                       f"{mix.shape[-1]} ({role} of mixture {entry.id!r})")
        sources = torch.stack([w for w, _ in signals])
        noise_wav = noise[0] if noise is not None else None
        if self.segment is not None:
            n = int(round(self.segment * rate))
            length = mix.shape[-1]
            if length >= n:
                start = int(np.random.default_rng((self.seed, index)).integers(0, length - n + 1))
                crop = slice(start, start + n)
                mix, sources = mix[crop], sources[:, crop]
                noise_wav = noise_wav[crop] if noise_wav is not None else None
            else:
                pad = (0, n - length)
                mix, sources = torch.nn.functional.pad(mix, pad), torch.nn.functional.pad(sources, pad)
                noise_wav = torch.nn.functional.pad(noise_wav, pad) if noise_wav is not None else None
        return MixtureExample(entry.id, mix.contiguous(), sources.contiguous(),
                              noise_wav.contiguous() if noise_wav is not None else None, rate)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        ex = self.example(index)
        return ex.mix, ex.sources
