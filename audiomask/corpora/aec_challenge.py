"""The synthetic set of the ICASSP / INTERSPEECH AEC Challenge (Microsoft).

Distributed in https://github.com/microsoft/AEC-Challenge (Git LFS) under
``datasets/synthetic``: 10,000 clips of 10 s at 16 kHz, file id ``N`` spread over four
folders and described by ``meta.csv`` (speakers, signal-to-echo ratio, non-linearity and
noise flags, and the ``split`` column, ``train`` / ``test``)::

    ROOT/nearend_mic_signal/nearend_mic_fileid_N.wav   microphone = near-end speech + echo (+ noise)
    ROOT/farend_speech/farend_speech_fileid_N.wav      far-end (loudspeaker) signal
    ROOT/nearend_speech/nearend_speech_fileid_N.wav    near-end speech (the target)
    ROOT/echo_signal/echo_fileid_N.wav                 the echo alone
    ROOT/meta.csv

The folder and file names are :data:`audiomask.data.aec.AEC_CHALLENGE_DIRS`, the layout
:class:`~audiomask.data.AECChallengeDataset` (what ``audiomask train`` reads with
``data.aec_dir``) uses; this module validates a copy against it and writes one manifest per
``split`` (columns ``id, mic, far, near, echo``) for scoring (:mod:`audiomask.corpora.aec_eval`).
``ROOT`` may also be the repository checkout (``datasets/synthetic`` is then used).
"""

from __future__ import annotations

import csv
from pathlib import Path

from audiomask.data.aec import AEC_CHALLENGE_DIRS
from audiomask.corpora.common import (Collected, PrepareError, PrepareOptions, Preparer, Row, audio_names,
                                      n_files, name_list)

AEC_ROLES = ("mic", "far", "near", "echo")


class AECChallenge(Preparer):
    name = "aec-challenge"
    title = "AEC Challenge synthetic set (Microsoft; echo cancellation, 16 kHz)"
    kind = "aec"
    rates = (16000,)
    default_rate = 16000
    modes = ()
    default_mode = ""
    tasks = {"aec": "nearend_mic_signal + farend_speech -> nearend_speech"}
    default_task = "aec"
    layout = ("ROOT/{nearend_mic_signal,farend_speech,nearend_speech,echo_signal}/<kind>_fileid_N.wav "
              "and ROOT/meta.csv (fileid, split)")
    generation = ("Clone https://github.com/microsoft/AEC-Challenge with Git LFS (git lfs install; git clone "
                  "https://github.com/microsoft/AEC-Challenge) and use datasets/synthetic as ROOT")

    def read_meta(self, root: Path) -> dict[int, str]:
        """File id → split, from ``meta.csv``."""
        path = root / "meta.csv"
        if not path.is_file():
            raise PrepareError(f"{self.name}: {path}: meta.csv not found (it gives the train/test split)")
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in ("fileid", "split") if c not in (reader.fieldnames or [])]
            if missing:
                raise PrepareError(f"{self.name}: {path}: column(s) {', '.join(missing)} missing")
            splits, bad = {}, []
            for line, rec in enumerate(reader, start=2):
                fid = (rec.get("fileid") or "").strip()
                if not fid.isdigit():
                    bad.append(f"line {line}")
                    continue
                splits[int(fid)] = (rec.get("split") or "").strip()
        if bad:
            raise PrepareError(f"{self.name}: {path}: {len(bad)} row(s) without a numeric fileid: {name_list(bad)}")
        if not splits:
            raise PrepareError(f"{self.name}: {path}: no clips listed")
        return splits

    def collect(self, root: Path, opts: PrepareOptions) -> Collected:
        base = self.find_root(root, "meta.csv", ["synthetic", "datasets/synthetic"])
        absent = [AEC_CHALLENGE_DIRS[k][0] + "/" for k in AEC_ROLES if not (base / AEC_CHALLENGE_DIRS[k][0]).is_dir()]
        if absent:
            raise PrepareError(f"{self.name}: {len(absent)} folder{'s' * (len(absent) != 1)} missing in {base}: "
                               f"{', '.join(absent)}")
        meta = self.read_meta(base)
        problems = []
        for kind in AEC_ROLES:
            folder, pattern = AEC_CHALLENGE_DIRS[kind]
            have = audio_names(base / folder)
            want = {pattern.format(i) for i in meta}
            missing, extra = sorted(want - have), sorted(have - want)
            if missing:
                problems.append(f"{n_files(len(missing))} listed in meta.csv missing in {folder}: {name_list(missing)}")
            if extra:
                problems.append(f"{n_files(len(extra))} in {folder} not in meta.csv: {name_list(extra)}")
        if problems:
            raise PrepareError(f"{self.name}: " + "; ".join(problems))
        names = sorted(set(meta.values()))
        unknown = [s for s in names if s not in ("train", "test")]
        if unknown or "train" not in names:
            raise PrepareError(f"{self.name}: meta.csv split column must hold train and test, found "
                               f"{', '.join(names) or 'nothing'}")
        rows: dict[str, list[Row]] = {s: [] for s in names}
        for fid in sorted(meta):
            files = {k: base / AEC_CHALLENGE_DIRS[k][0] / AEC_CHALLENGE_DIRS[k][1].format(fid) for k in AEC_ROLES}
            rows[meta[fid]].append(Row(str(fid), files))
        test = "test" if "test" in rows else "train"
        warnings = [] if "test" in rows else [f"{self.name}: meta.csv has no test clips; validating on train"]
        return Collected(rows, {"train": "train", "valid": test, "test": test}, "the AEC Challenge is 16 kHz",
                         warnings, base)
