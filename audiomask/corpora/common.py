"""What every corpus preparer shares: match files across folders, check them, write manifests.

A preparer (one per corpus family, see :mod:`audiomask.corpora`) only knows its corpus'
layout: which split folders exist, which sub-folders hold the mixture and each target, and
where the metadata are. It turns that into :class:`Row` lists (one per mixture: a role →
file map) and hands them to :meth:`Preparer.prepare`, which runs the same steps for every
corpus:

1. **match** — :func:`match_by_name` pairs the files of name-matched layouts (wsj0-mix,
   WHAM!/WHAMR!, LibriMix): every mixture needs a file of the same name in every target
   folder, and no target folder may hold files without a mixture;
2. **check** — :func:`check_audio` reads every file's header (``soundfile`` via
   :func:`audiomask.audio.audio_info`, never the samples, so tens of thousands of files take
   seconds) and refuses unreadable files, wrong sample rates, multi-channel files, empty
   files and mixtures whose files differ in length;
3. **write** — one CSV manifest per split in :mod:`audiomask.data.manifest`'s format (``id``,
   then one column per role, paths relative to the manifest) and ``prepare.json``, the record
   of what was prepared (which manifest is train / valid / test, counts, hours, warnings),
   written last so its presence means the step finished.

Every problem is one :class:`PrepareError` line that names the corpus, the offending files
(relative to the corpus root, at most five, then "… and N more") and their count.
"""

from __future__ import annotations

import csv
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from audiomask.audio import AudioError, AudioInfo, audio_info
from audiomask.data.manifest import ManifestError
from audiomask.data.speakers import AUDIO_EXTENSIONS
from audiomask.fileio import atomic_target, atomic_write_text

__all__ = ["PrepareError", "Row", "Collected", "PrepareOptions", "PrepareResult", "Preparer", "match_by_name",
           "check_audio", "write_manifest", "name_list", "n_files", "audio_names", "SUMMARY_NAME"]

SUMMARY_NAME = "prepare.json"
_MAX_NAMED = 5


class PrepareError(ManifestError):
    """A corpus copy that cannot be prepared; ``str(err)`` is one line naming the files."""


def name_list(items: Sequence[str], limit: int = _MAX_NAMED) -> str:
    """``"a, b, c"``, or the first ``limit`` names and ``"… and N more"``."""
    shown = ", ".join(items[:limit])
    return shown + (f", … and {len(items) - limit} more" if len(items) > limit else "")


def n_files(n: int) -> str:
    """``"1 file"``, ``"3 files"``."""
    return f"{n} file{'s' * (n != 1)}"


@dataclass(frozen=True)
class Row:
    """One example of a split: its id and one file per role (``mix``, ``s1``, …, ``noise``;
    ``mic``, ``far``, ``near``, ``echo`` for echo cancellation), in manifest column order.
    ``length``: the number of samples the corpus' metadata promise for it (checked), if any."""

    id: str
    files: Mapping[str, Path]
    length: int | None = None


@dataclass
class Collected:
    """What a preparer found: rows per split (in output order), which split is
    ``train``/``valid``/``test``, why the expected rate is what it is (for messages, e.g.
    ``"wav8k"``), warnings, and the corpus folder itself when it is below the given root."""

    splits: dict[str, list[Row]]
    roles: dict[str, str]
    rate_note: str = ""
    warnings: list[str] = field(default_factory=list)
    corpus_dir: Path | None = None


@dataclass
class PrepareOptions:
    """The user's choices (``None``: the preparer's default)."""

    sample_rate: int | None = None
    mode: str | None = None
    task: str | None = None
    train_split: str | None = None
    jobs: int = 8
    progress: bool = True


@dataclass
class PrepareResult:
    """What :meth:`Preparer.prepare` wrote: manifests per split, the train/valid/test roles."""

    dataset: str
    out_dir: Path
    manifests: dict[str, Path]
    counts: dict[str, int]
    hours: dict[str, float]
    roles: dict[str, str]
    summary_path: Path
    warnings: list[str] = field(default_factory=list)

    def table(self) -> str:
        lines = [f"{self.dataset}: prepared {sum(self.counts.values())} examples in {len(self.counts)} splits"]
        for split, path in self.manifests.items():
            role = "/".join(r for r, s in self.roles.items() if s == split)
            lines.append(f"  {split:<10} {self.counts[split]:>7} examples {self.hours[split]:8.2f} h  {path}"
                         + (f"  ({role})" if role else ""))
        lines.append(f"  summary: {self.summary_path}")
        return "\n".join(lines)


def _rel(path: Path, root: Path) -> str:
    """``path`` relative to the corpus root, for messages."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def audio_names(folder: Path) -> set[str]:
    """Names of the audio files directly in ``folder`` (hidden files skipped)."""
    with os.scandir(folder) as it:
        return {e.name for e in it if e.is_file() and not e.name.startswith(".")
                and os.path.splitext(e.name)[1].lower() in AUDIO_EXTENSIONS}


def match_by_name(dataset: str, root: Path, split_dir: Path, folders: Mapping[str, str],
                  ids: Sequence[str] | None = None, lengths: Mapping[str, int] | None = None,
                  ext: str = ".wav") -> list[Row]:
    """Rows of a layout where each role has a folder and one example has the same file name in
    all of them (``split_dir/<folders[role]>/<NAME>``), sorted by name.

    ``folders`` maps roles to sub-folders, the mixture's first (``{"mix": "mix_both", "s1":
    "s1", …}``). The mixture folder defines the examples, unless ``ids`` (from the corpus'
    metadata) is given: then exactly ``<id><ext>`` must be in every folder. A missing folder,
    a missing file or a file without a mixture (or not in the metadata) raises one
    :class:`PrepareError` listing them with counts.
    """
    missing_dirs = [sub for sub in folders.values() if not (split_dir / sub).is_dir()]
    if missing_dirs:
        where = _rel(split_dir, root)
        if not split_dir.is_dir():
            raise PrepareError(f"{dataset}: split folder {where}/ not found under {root}")
        raise PrepareError(f"{dataset}: {len(missing_dirs)} folder{'s' * (len(missing_dirs) != 1)} missing "
                           f"in {where}/: {name_list([d + '/' for d in missing_dirs])}")
    roles = list(folders)
    names = {role: audio_names(split_dir / folders[role]) for role in roles}
    mix_folder = _rel(split_dir / folders[roles[0]], root)
    if ids is not None:
        reference, origin = {i + ext for i in ids}, "the metadata"
    else:
        reference, origin = names[roles[0]], mix_folder
    if not reference:
        raise PrepareError(f"{dataset}: no audio files in {mix_folder}/")
    problems = []
    for role in roles:
        where = _rel(split_dir / folders[role], root)
        missing = sorted(reference - names[role])
        extra = sorted(names[role] - reference)
        if missing:
            problems.append(f"{n_files(len(missing))} missing in {where}: {name_list(missing)}")
        if extra:
            problems.append(f"{n_files(len(extra))} in {where} not in {origin}: {name_list(extra)}")
    if problems:
        raise PrepareError(f"{dataset}: " + "; ".join(problems))
    rows = []
    for name in sorted(reference):
        stem = name[: -len(ext)] if name.endswith(ext) else os.path.splitext(name)[0]
        rows.append(Row(stem, {role: split_dir / folders[role] / name for role in roles},
                        None if lengths is None else lengths.get(stem)))
    return rows


def _info(path: Path) -> AudioInfo | AudioError:
    try:
        return audio_info(path)
    except AudioError as e:
        return e


def check_audio(dataset: str, root: Path, splits: Mapping[str, Sequence[Row]], sample_rate: int,
                rate_note: str = "", jobs: int = 8, progress: bool = True) -> dict[str, float]:
    """Read every file's header; raise one :class:`PrepareError` naming all unreadable,
    empty, multi-channel and wrong-rate files and every example whose files differ in length
    (or from the length its metadata give). Returns the hours of mixture audio per split.

    Headers are read on ``jobs`` threads (network file systems are latency-bound)."""
    from tqdm import tqdm

    items = [(split, row, role, path) for split, rows in splits.items() for row in rows
             for role, path in row.files.items()]
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        infos = list(tqdm(pool.map(_info, [p for *_, p in items]), total=len(items), unit="file",
                          desc=f"{dataset}: checking", disable=not progress, mininterval=1.0))
    unreadable, rate, channels, empty, length, promised = [], [], [], [], [], []
    frames: dict[tuple[str, str], dict[str, int]] = {}
    for (split, row, role, path), info in zip(items, infos):
        name = _rel(path, root)
        if isinstance(info, AudioError):
            unreadable.append(f"{name} ({info.problem})")
            continue
        if info.sample_rate != sample_rate:
            rate.append(f"{name} ({info.sample_rate} Hz)")
        if info.channels != 1:
            channels.append(f"{name} ({info.channels} channels)")
        if info.frames == 0:
            empty.append(name)
        frames.setdefault((split, row.id), {})[role] = info.frames
    hours = {split: 0.0 for split in splits}
    for split, rows in splits.items():
        for row in rows:
            got = frames.get((split, row.id), {})
            roles = list(row.files)
            if roles[0] not in got:
                continue
            ref = got[roles[0]]
            hours[split] += ref / sample_rate / 3600
            for role in roles[1:]:
                if role in got and got[role] != ref:
                    length.append(f"{_rel(row.files[role], root)} ({got[role]} samples, "
                                  f"{row.files[roles[0]].name} has {ref})")
            if row.length is not None and row.length != ref:
                promised.append(f"{_rel(row.files[roles[0]], root)} ({ref} samples, the metadata say {row.length})")
    parts = []
    if unreadable:
        parts.append(f"{n_files(len(unreadable))} unreadable: {name_list(unreadable)}")
    if rate:
        note = f" ({rate_note})" if rate_note else ""
        parts.append(f"{n_files(len(rate))} not at the expected {sample_rate} Hz{note}: {name_list(rate)}")
    if channels:
        parts.append(f"{n_files(len(channels))} not mono: {name_list(channels)}")
    if empty:
        parts.append(f"{n_files(len(empty))} empty (0 samples): {name_list(empty)}")
    if length:
        verb = "differs" if len(length) == 1 else "differ"
        parts.append(f"{n_files(len(length))} {verb} in length from their mixture: {name_list(length)}")
    if promised:
        verb = "differs" if len(promised) == 1 else "differ"
        parts.append(f"{n_files(len(promised))} {verb} in length from the metadata: {name_list(promised)}")
    if parts:
        raise PrepareError(f"{dataset}: " + "; ".join(parts))
    return hours


def _real_path(path: Path, root: Path, root_real: str) -> str:
    """``path`` (inside ``root``) under the corpus root's real location. Relative manifest
    paths are computed between real paths: the OS resolves ``..`` after following symlinks,
    so a relative path between lexical paths could lead elsewhere."""
    return os.path.join(root_real, os.path.relpath(os.path.abspath(path), os.path.abspath(root)))


def write_manifest(path: Path, rows: Sequence[Row], columns: Sequence[str], root: Path) -> Path:
    """CSV ``id,<columns…>`` (the :mod:`audiomask.data.manifest` format), paths relative to the
    manifest's folder (absolute where no relative path exists, e.g. another drive)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = os.path.realpath(path.parent)
    root_real = os.path.realpath(root)
    with atomic_target(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["id", *columns])
            for row in rows:
                cells = [row.id]
                for column in columns:
                    file = row.files.get(column)
                    if file is None:
                        cells.append("")
                        continue
                    real = _real_path(file, root, root_real)
                    try:
                        cells.append(Path(os.path.relpath(real, base)).as_posix())
                    except ValueError:
                        cells.append(real)
                writer.writerow(cells)
    return path


class Preparer:
    """One corpus family. Subclasses set the class attributes and implement :meth:`collect`.

    Attributes:
        name: the ``audiomask prepare`` name, e.g. ``"wham"``.
        title: one line for ``--help``.
        kind: ``"separation"`` (manifest columns ``mix, s1…, [noise]``) or ``"aec"``
            (``mic, far, near, echo``).
        rates / default_rate: the sample rates the corpus is distributed at.
        modes / default_mode: ``min`` / ``max`` mixture lengths (empty: not applicable).
        tasks / default_task: task name → what it separates (mixture folder → targets).
        train_splits / default_train_split: candidate training splits (LibriMix).
        layout: the expected tree, for ``--help`` and the recipe README.
        generation: how users get the corpus (generation scripts or download).
    """

    name = ""
    title = ""
    kind = "separation"
    rates: tuple[int, ...] = (8000, 16000)
    default_rate = 8000
    modes: tuple[str, ...] = ("min", "max")
    default_mode = "min"
    tasks: dict[str, str] = {}
    default_task = ""
    train_splits: tuple[str, ...] = ()
    default_train_split = ""
    layout = ""
    generation = ""

    # -- what a subclass provides ------------------------------------------------------
    def collect(self, root: Path, opts: PrepareOptions) -> Collected:
        """The rows of every split for the chosen (resolved) options, matched but not yet
        checked; layout problems raise :class:`PrepareError`."""
        raise NotImplementedError

    def columns(self, opts: PrepareOptions, splits: Mapping[str, Sequence[Row]]) -> list[str]:
        """Manifest columns after ``id``: the roles of the first row, in order."""
        for rows in splits.values():
            if rows:
                return list(rows[0].files)
        return []

    # -- the shared procedure ------------------------------------------------------------
    def resolve(self, opts: PrepareOptions) -> PrepareOptions:
        """Fill defaults and refuse values the corpus does not have (one line, naming them)."""
        rate = self.default_rate if opts.sample_rate is None else int(opts.sample_rate)
        if self.rates and rate not in self.rates:
            raise PrepareError(f"{self.name}: --sample-rate {rate} not available; the corpus has "
                               f"{', '.join(map(str, self.rates))} Hz")
        mode = opts.mode or self.default_mode or None
        if mode is not None and self.modes and mode not in self.modes:
            raise PrepareError(f"{self.name}: --mode {mode} unknown; choose {' or '.join(self.modes)}")
        if mode is not None and not self.modes:
            raise PrepareError(f"{self.name}: --mode does not apply (the corpus has one version)")
        task = opts.task or self.default_task or None
        if task is not None and task not in self.tasks:
            raise PrepareError(f"{self.name}: --task {task} unknown; choose one of {', '.join(self.tasks)}")
        train = opts.train_split or self.default_train_split or None
        if train is not None and self.train_splits and train not in self.train_splits:
            raise PrepareError(f"{self.name}: --train-split {train} unknown; choose one of "
                               f"{', '.join(self.train_splits)}")
        if opts.train_split and not self.train_splits:
            raise PrepareError(f"{self.name}: --train-split does not apply (the corpus has one training split)")
        return PrepareOptions(rate, mode, task, train, opts.jobs, opts.progress)

    def prepare(self, root: str | os.PathLike, out_dir: str | os.PathLike,
                opts: PrepareOptions | None = None) -> PrepareResult:
        """Scan ``root``, validate it, write ``out_dir/<split>.csv`` and ``out_dir/prepare.json``."""
        t0 = time.time()
        root = Path(root).expanduser()
        if not root.is_dir():
            raise PrepareError(f"{self.name}: {root}: corpus folder not found")
        opts = self.resolve(opts or PrepareOptions())
        try:
            found = self.collect(root, opts)
        except OSError as e:  # unreadable folders: permissions, broken links
            raise PrepareError(f"{self.name}: {e.filename or root}: {e.strerror or e}") from None
        splits, roles, warnings = found.splits, found.roles, found.warnings
        hours = check_audio(self.name, root, splits, opts.sample_rate, found.rate_note, opts.jobs, opts.progress)
        out = Path(out_dir).expanduser()
        columns = self.columns(opts, splits)
        manifests = {split: write_manifest(out / f"{split}.csv", rows, columns, root)
                     for split, rows in splits.items()}
        counts = {split: len(rows) for split, rows in splits.items()}
        summary: dict[str, Any] = {
            "dataset": self.name, "kind": self.kind, "root": os.path.abspath(root),
            "corpus_dir": os.path.abspath(found.corpus_dir or root),
            "sample_rate": opts.sample_rate, "mode": opts.mode, "task": opts.task,
            "n_src": sum(1 for c in columns if c.startswith("s") and c[1:].isdigit()),
            "columns": columns, **roles,
            "splits": {split: {"manifest": manifests[split].name, "examples": counts[split],
                               "hours": round(hours[split], 3)} for split in splits},
            "warnings": warnings, "seconds": round(time.time() - t0, 1),
        }
        summary_path = atomic_write_text(out / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")
        return PrepareResult(self.name, out, manifests, counts, hours, dict(roles), summary_path, warnings)

    # -- helpers for subclasses --------------------------------------------------------------
    @staticmethod
    def count_warnings(name: str, counts: Mapping[str, int], expected: Mapping[str, int]) -> list[str]:
        """Warnings for splits whose size differs from the standard corpus (a partial copy
        is allowed — e.g. for a dry run — but should not be reported as the benchmark)."""
        return [f"{name}: {split} has {counts[split]} examples, the standard corpus has {n}"
                for split, n in expected.items() if split in counts and counts[split] != n]

    @staticmethod
    def find_root(root: Path, marker: str, candidates: Iterable[str]) -> Path:
        """``root`` if it holds ``marker``, else the first ``root/<candidate>`` that does (so
        users may point at the corpus folder or at its parent)."""
        if (root / marker).exists():
            return root
        for c in candidates:
            if (root / c / marker).exists():
                return root / c
        return root
