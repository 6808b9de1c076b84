"""EchoSet (Xu, Li, Chen and Hu, TIGER, ICLR 2025), as released by its authors.

EchoSet is distributed ready-made (https://huggingface.co/datasets/JusperLee/EchoSet): two
LibriSpeech speakers and noise rendered in Matterport3D rooms with SoundSpaces 2.0, 16 kHz.
Every example is a folder holding its mixture and the two *reverberant* speaker images, which
are the targets (the task keeps the room, removes the other speaker and the noise)::

    ROOT/{train,val,test}/<scene>/<room>/<spk1>_<spk2>/mix.wav, spk1_reverb.wav, spk2_reverb.wav

This is the layout the authors' own preparation reads (``DataPreProcess/process_echoset.py``
in the TIGER repository: every ``mix*.wav`` under a split, its targets named by replacing
``mix`` with ``spk1_reverb`` / ``spk2_reverb``). The nesting depth is free; a mixture file
``mix<suffix>.wav`` pairs with ``spk1_reverb<suffix>.wav`` and ``spk2_reverb<suffix>.wav``
in the same folder. Other files (e.g. noise renderings) are ignored. Example ids are the
mixture's path inside its split, without ``.wav``.
"""

from __future__ import annotations

import os
from pathlib import Path

from audiomask.corpora.common import Collected, PrepareError, PrepareOptions, Preparer, Row, n_files, name_list

ECHOSET_SPLITS = ("train", "val", "test")
ECHOSET_TARGETS = ("spk1_reverb", "spk2_reverb")


class EchoSet(Preparer):
    name = "echoset"
    title = "EchoSet (2 speakers + noise in Matterport3D rooms, 16 kHz; TIGER authors)"
    rates = (16000,)
    default_rate = 16000
    modes = ()
    default_mode = ""
    tasks = {"sep_reverb_noisy": "mix -> spk1_reverb,spk2_reverb"}
    default_task = "sep_reverb_noisy"
    layout = "ROOT/{train,val,test}/<scene>/<room>/<spk1>_<spk2>/{mix,spk1_reverb,spk2_reverb}.wav"
    generation = ("Download the release: https://huggingface.co/datasets/JusperLee/EchoSet "
                  "(e.g. huggingface-cli download JusperLee/EchoSet --repo-type dataset --local-dir ROOT)")

    def split_rows(self, root: Path, split_dir: Path) -> list[Row]:
        """Every ``mix*.wav`` under ``split_dir`` with its two reverberant targets."""
        rows, missing = [], []
        for folder, _dirs, files in os.walk(split_dir):
            names = set(files)
            for mix in sorted(f for f in files if f.startswith("mix") and f.endswith(".wav")):
                suffix = mix[len("mix"):]
                targets = {f"s{i + 1}": t + suffix for i, t in enumerate(ECHOSET_TARGETS)}
                absent = [t for t in targets.values() if t not in names]
                if absent:
                    missing += [(Path(folder) / t).relative_to(root).as_posix() for t in absent]
                    continue
                path = Path(folder) / mix
                rows.append(Row(path.relative_to(split_dir).with_suffix("").as_posix(),
                                {"mix": path, **{k: Path(folder) / v for k, v in targets.items()}}))
        if missing:
            raise PrepareError(f"{self.name}: {n_files(len(missing))} missing next to "
                               f"their mixtures: {name_list(sorted(missing))}")
        if not rows:
            raise PrepareError(f"{self.name}: no mix*.wav files under {split_dir.relative_to(root).as_posix()}/")
        return sorted(rows, key=lambda r: r.id)

    def collect(self, root: Path, opts: PrepareOptions) -> Collected:
        base = self.find_root(root, "train", ["EchoSet"])
        absent = [s + "/" for s in ECHOSET_SPLITS if not (base / s).is_dir()]
        if absent:
            raise PrepareError(f"{self.name}: {len(absent)} split folder{'s' * (len(absent) != 1)} missing in "
                               f"{base}: {', '.join(absent)} (expected {', '.join(ECHOSET_SPLITS)})")
        rows = {s: self.split_rows(root, base / s) for s in ECHOSET_SPLITS}
        return Collected(rows, {"train": "train", "valid": "val", "test": "test"}, "EchoSet is 16 kHz", [], base)
