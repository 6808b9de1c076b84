"""The audio files ``separate`` and ``aec`` write: planned and checked before any work,
never overwriting, at one level rule and in one format.

* **Paths.** :func:`plan_separation` gives every input its output files before the first
  separation. An output never replaces an input of the call, another output of the call, or
  (unless ``overwrite``) an existing file. Inputs whose names collide in one folder
  (``a/mix.wav`` and ``b/mix.wav`` into ``out/``) get their parent folder's name in front
  (``out/a_mix_s1.wav``, ``out/b_mix_s1.wav``); collisions that this does not resolve, and
  every other problem, are one-line errors for the inputs concerned, before any work.
* **Level.** :func:`match_mixture_level`: each estimate ``ŝᵢ`` is multiplied by its
  least-squares gain onto the mixture ``x``, ``gᵢ = <ŝᵢ, x> / ‖ŝᵢ‖²``. Models trained with a
  scale-invariant loss output arbitrary levels (and polarities); a source uncorrelated with the
  others comes out at the level and polarity at which it is in the mixture. (One common gain
  fitting the estimates' sum to the mixture is not enough: the bundled models project their
  estimates onto the mixture — their sum already is the mixture — yet each peaks at 2.7× it.)
* **Clipping.** :func:`limit_peak`: when an output of a file would peak above full scale
  (1.0), all outputs of that file are scaled down together to a peak of :data:`LIMITED_PEAK`,
  and the caller warns. Nothing is clipped, in any format, now or when converted later.
* **Format.** One WAV subtype per run, ``--format`` (:data:`OUTPUT_FORMATS`), default
  :data:`DEFAULT_FORMAT` (32-bit float).
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import soundfile as sf
import torch

from audiomask.audio import AudioError, write_audio

__all__ = ["OUTPUT_FORMATS", "DEFAULT_FORMAT", "LIMITED_PEAK", "AUDIO_EXTENSIONS", "OutputPlan",
           "audio_files_in", "expand_inputs", "check_output_folder", "check_output_file",
           "plan_separation", "match_mixture_level", "limit_peak", "write_outputs"]

#: ``--format`` value → libsndfile subtype
OUTPUT_FORMATS = {"float32": "FLOAT", "pcm16": "PCM_16", "pcm24": "PCM_24"}
DEFAULT_FORMAT = "float32"
#: the peak that outputs over full scale are scaled down to
LIMITED_PEAK = 0.99
#: file name extensions taken as audio when a folder is given (what libsndfile reads)
AUDIO_EXTENSIONS = frozenset(
    {"." + f.lower() for f in sf.available_formats()} | {".aif", ".aifc", ".oga", ".opus", ".mp3"})


@dataclass
class OutputPlan:
    """One input, the audio files it will be written to (one per source), and any other
    files planned beside them (``extras``, e.g. a spectrogram)."""

    input: Path
    targets: list[Path]
    extras: list[Path]


# --------------------------------------------------------------------------- #
# inputs
# --------------------------------------------------------------------------- #
def audio_files_in(folder: str | os.PathLike) -> tuple[list[Path], int]:
    """The audio files directly inside ``folder``, sorted by name, and how many were left out
    as earlier outputs (``<stem>_s<k>.<ext>`` beside an audio file ``<stem>.*``)."""
    folder = Path(folder)
    try:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
    except OSError as e:
        raise AudioError(folder, f"cannot list the folder ({e.strerror or e})") from e
    stems = {p.stem for p in files}
    kept = [p for p in files if not _is_output_of(p.stem, stems)]
    return kept, len(files) - len(kept)


def _is_output_of(stem: str, stems: set[str]) -> bool:
    m = re.fullmatch(r"(.+)_(s\d+|near|echo|noise)", stem)
    return bool(m) and m.group(1) in stems


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> tuple[list[Path], list[str], list[str]]:
    """Files and folders → ``(files, errors, notes)``: a folder gives its audio files
    (:func:`audio_files_in`), a file given twice counts once; an unlistable or empty folder
    is an error line, each folder a note saying how many files it gave."""
    files: list[Path] = []
    errors: list[str] = []
    notes: list[str] = []
    seen: set[Path] = set()
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            try:
                found, skipped = audio_files_in(path)
            except AudioError as e:
                errors.append(str(e))
                continue
            if not found:
                errors.append(str(AudioError(path, "no audio files in this folder")))
                continue
            extra = f" (left out {skipped} earlier output{'s' * (skipped != 1)})" if skipped else ""
            notes.append(f"{path}: {len(found)} audio file{'s' * (len(found) != 1)}{extra}")
        else:
            found = [path]
        for f in found:
            key = _resolved(f)
            if key not in seen:
                seen.add(key)
                files.append(f)
    return files, errors, notes


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return path.absolute()


# --------------------------------------------------------------------------- #
# output paths
# --------------------------------------------------------------------------- #
def check_output_folder(folder: str | os.PathLike, label: str = "--out") -> Path:
    """Make sure ``folder`` can be written, creating nothing: a file in its place or on its
    way, or (the folder or, when missing, its nearest existing parent) refusing a test file
    raises :class:`AudioError` naming it. The writers create missing folders."""
    folder = Path(folder)
    existing = None
    for part in [folder, *folder.parents]:
        try:
            if not part.exists():
                continue
        except OSError as e:
            raise AudioError(folder, f"cannot write in this folder ({e.strerror or e})") from e
        if not part.is_dir():
            where = "is a file" if part == folder else f"is under {part}, which is a file"
            raise AudioError(folder, f"{where}; {label} must be a folder")
        existing = existing or part
    try:
        with tempfile.TemporaryFile(dir=existing or Path.cwd()):
            pass
    except OSError as e:
        raise AudioError(folder, f"cannot write in this folder ({e.strerror or e})") from e
    return folder


def check_output_file(path: str | os.PathLike, inputs: Sequence[str | os.PathLike], subtype: str,
                      overwrite: bool = False, label: str = "--out") -> Path:
    """Check an output file before any work: a known audio extension that can hold
    ``subtype``, not one of ``inputs``, not an existing file unless ``overwrite``, and a
    writable folder (created if missing). Raises :class:`AudioError` naming the file."""
    path = Path(path)
    ext = path.suffix[1:].upper()
    fmt = {"AIF": "AIFF", "AIFC": "AIFF", "OGA": "OGG", "OPUS": "OGG"}.get(ext, ext)
    if not ext or fmt not in sf.available_formats():
        raise AudioError(path, f"{label} needs an audio file name extension such as .wav or .flac "
                               f"(got {path.suffix or 'none'})")
    if not sf.check_format(fmt, subtype):
        names = [k for k, v in OUTPUT_FORMATS.items() if sf.check_format(fmt, v)]
        hint = f"use --format {' or '.join(names)}" if names else "write a .wav file"
        raise AudioError(path, f"{fmt} files cannot hold {subtype} samples; {hint}")
    if _resolved(path) in {_resolved(Path(p)) for p in inputs}:
        raise AudioError(path, "is an input of this command; inputs are never overwritten")
    if path.is_dir():
        raise AudioError(path, f"is a folder; {label} must be a file")
    if path.exists() and not overwrite:
        raise AudioError(path, "exists; pass --overwrite to replace it")
    for part in path.parents:
        if part.exists() and not part.is_dir():
            raise AudioError(path, f"is under {part}, which is a file")
    check_output_folder(path.parent, label)
    return path


def plan_separation(inputs: Sequence[Path], out: str | os.PathLike | None, n_src: int, overwrite: bool = False,
                    ext: str = ".wav", extras: Sequence[str] = ()) -> tuple[list[OutputPlan], list[str]]:
    """Output files of each input: ``<out>/<stem>_s1<ext>`` … ``_s<n_src>``, then one
    ``<stem><extra>`` per entry of ``extras`` (e.g. ``"_spectrogram.png"``); ``out=None``
    puts them beside each input. Returns ``(plans, errors)``: the inputs that can go ahead and
    one line per input that cannot (see the module docstring for the rules). The folders are
    checked for writing here (:func:`check_output_folder`)."""
    errors: list[str] = []
    folders: dict[Path, str | None] = {}  # folder → its problem, checked once
    names: dict[Path, list[str]] = {}
    for path in inputs:
        folder = Path(out) if out is not None else path.parent
        if folder not in folders:
            try:
                check_output_folder(folder)
                folders[folder] = None
            except AudioError as e:
                folders[folder] = str(e)
                errors.append(str(e))
        if folders[folder] is None:
            names[path] = [path.stem]

    def targets(path: Path, stem: str) -> list[Path]:
        folder = Path(out) if out is not None else path.parent
        return ([folder / f"{stem}_s{i + 1}{ext}" for i in range(n_src)]
                + [folder / f"{stem}{extra}" for extra in extras])  # audio first, then the extras

    def clashes() -> dict[Path, set[Path]]:
        owners: dict[Path, set[Path]] = {}
        for path, (stem,) in names.items():
            for t in targets(path, stem):
                owners.setdefault(_resolved(t), set()).add(path)
        return {t: owner for t, owner in owners.items() if len(owner) > 1}

    for path in {p for owner in clashes().values() for p in owner}:  # a/mix.wav, b/mix.wav → a_mix, b_mix
        names[path] = [f"{_resolved(path).parent.name}_{path.stem}"]
    for target, owner in clashes().items():
        for path in sorted(owner):
            if path in names:
                others = ", ".join(str(p) for p in sorted(owner) if p != path)
                errors.append(str(AudioError(path, f"its output {target.name} would also be written for {others}; "
                                                    "give them separate --out folders")))
                del names[path]

    input_keys = {_resolved(p) for p in inputs}
    plans: list[OutputPlan] = []
    for path in inputs:
        if path not in names:
            continue
        outs = targets(path, names[path][0])
        problem = None
        for t in outs:
            if _resolved(t) in input_keys:
                problem = f"its output {t} is an input of this command; inputs are never overwritten " \
                          "(choose another --out)"
                break
            if t.is_dir():
                problem = f"its output {t} is a folder"
                break
            if t.exists() and not overwrite:
                problem = f"its output {t} exists; pass --overwrite to replace it"
                break
        if problem:
            errors.append(str(AudioError(path, problem)))
        else:
            plans.append(OutputPlan(path, outs[:n_src], outs[n_src:]))
    return plans, errors


# --------------------------------------------------------------------------- #
# level, peak, writing
# --------------------------------------------------------------------------- #
def match_mixture_level(estimates: torch.Tensor, mixture: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(estimates [n, T] scaled, gains [n])``: estimate ``i`` times ``gᵢ = <ŝᵢ, x> / ‖ŝᵢ‖²``,
    its least-squares gain onto ``mixture [T]`` (1 for a silent estimate)."""
    est = estimates.double()
    energy = (est * est).sum(-1)
    gains = torch.where(energy > 0, (est * mixture.double()).sum(-1) / energy.clamp_min(1e-300),
                        torch.ones_like(energy))
    return (est * gains[:, None]).to(estimates.dtype), gains


def limit_peak(signals: torch.Tensor) -> tuple[torch.Tensor, float]:
    """``(signals · s, s)``: ``s = LIMITED_PEAK / peak`` when the peak of ``signals`` exceeds
    1.0 (all scaled together), else ``s = 1``."""
    peak = float(signals.abs().max()) if signals.numel() else 0.0
    if peak <= 1.0:
        return signals, 1.0
    scale = LIMITED_PEAK / peak
    return signals * scale, scale


def write_outputs(targets: Sequence[Path], signals: torch.Tensor, sample_rate: int, subtype: str) -> list[Path]:
    """Write ``signals[i]`` to ``targets[i]`` (atomically, ``subtype``); all or none: when one
    write fails, those already written are removed. Raises :class:`AudioError` naming the file."""
    written: list[Path] = []
    try:
        for target, wav in zip(targets, signals):
            try:
                written.append(write_audio(target, wav, sample_rate, subtype=subtype))
            except (OSError, ValueError) as e:
                raise AudioError(target, f"cannot write ({getattr(e, 'strerror', None) or e})") from e
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise
    return written
