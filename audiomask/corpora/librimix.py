"""Libri2Mix and Libri3Mix, as written by the LibriMix generation scripts.

LibriMix is generated from LibriSpeech and the WHAM! noise corpus; the recipe does not
generate it. ``generate_librimix.sh`` of https://github.com/JorisCos/LibriMix (which calls
``scripts/create_librimix_from_metadata.py``) writes::

    ROOT/Libri{2,3}Mix/wav{8k,16k}/{min,max}/{train-360,train-100,dev,test}/
        {mix_clean,mix_both,mix_single,s1,s2[,s3],noise}/<mixture_ID>.wav
    ROOT/Libri{2,3}Mix/wav{8k,16k}/{min,max}/metadata/mixture_<split>_<mix type>.csv

The metadata CSVs (columns ``mixture_ID, [original_mixture_ID,] mixture_path,
source_1_path, …, [noise_path,] length``) are the authority: every listed mixture must be on
disk with every target (and no other file), with the listed length. Their paths are absolute
on the machine that generated the corpus, so only ``mixture_ID`` and ``length`` are used.
``ROOT`` may be the ``Libri2Mix`` folder itself or its parent.

Tasks: ``sep_clean`` (mix_clean → s1…sN), ``sep_noisy`` (mix_both → s1…sN, + noise),
``enh_single`` (mix_single → s1, + noise). The training split is chosen with
``--train-split`` (``train-100`` by default, as the recipes' configs; ``train-360``).
"""

from __future__ import annotations

import csv
from pathlib import Path

from audiomask.corpora.common import Collected, PrepareError, PrepareOptions, Preparer, Row, match_by_name, name_list

LIBRIMIX_TRAIN_SPLITS = ("train-100", "train-360")


class LibriMix(Preparer):
    """Libri{2,3}Mix (LibriSpeech speakers, WHAM! noise)."""

    modes = ("min", "max")
    train_splits = LIBRIMIX_TRAIN_SPLITS
    default_train_split = "train-100"
    default_task = "sep_clean"
    generation = ("Generate with https://github.com/JorisCos/LibriMix: ./generate_librimix.sh STORAGE_DIR "
                  "(downloads LibriSpeech and wham_noise, about 430 GB for Libri2Mix with every rate, mode "
                  "and mixture type; edit the script's --freqs/--modes/--types to make less)")

    def __init__(self, n_src: int) -> None:
        self.n_src = n_src
        self.name = f"libri{n_src}mix"
        self.title = f"Libri{n_src}Mix ({n_src} LibriSpeech speakers [+ WHAM! noise]; JorisCos/LibriMix)"
        sources = tuple(f"s{i + 1}" for i in range(n_src))
        self.task_folders = {"sep_clean": ("mix_clean", sources, None),
                             "sep_noisy": ("mix_both", sources, "noise"),
                             "enh_single": ("mix_single", ("s1",), "noise")}
        self.tasks = {t: f"{m} -> {','.join(s)}" + (f" (+{n})" if n else "")
                      for t, (m, s, n) in self.task_folders.items()}
        self.layout = (f"ROOT/Libri{n_src}Mix/{{wav8k,wav16k}}/{{min,max}}/{{train-100,train-360,dev,test}}/"
                       f"{{mix_clean,mix_both,mix_single,{','.join(sources)},noise}}/<mixture_ID>.wav and "
                       f"ROOT/Libri{n_src}Mix/{{wav8k,wav16k}}/{{min,max}}/metadata/mixture_<split>_<mix type>.csv")

    def read_metadata(self, root: Path, path: Path) -> tuple[list[str], dict[str, int]]:
        """Mixture ids and lengths listed in one ``mixture_<split>_<type>.csv``."""
        where = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
        if not path.is_file():
            raise PrepareError(f"{self.name}: metadata file {where} not found (LibriMix writes it next to the "
                               "split folders; regenerate or copy the metadata folder)")
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            missing = [c for c in ("mixture_ID", "length") if c not in header]
            if missing:
                raise PrepareError(f"{self.name}: {where}: column(s) {', '.join(missing)} missing; "
                                   f"header is {','.join(header)}")
            ids, lengths, bad = [], {}, []
            for rec in reader:
                mid = (rec.get("mixture_ID") or "").strip()
                if not mid:
                    continue
                ids.append(mid)
                try:
                    lengths[mid] = int(float(rec["length"]))
                except (TypeError, ValueError):
                    bad.append(mid)
        if bad:
            raise PrepareError(f"{self.name}: {where}: {len(bad)} row(s) without a numeric length: {name_list(bad)}")
        if not ids:
            raise PrepareError(f"{self.name}: {where}: no mixtures listed")
        return ids, lengths

    def collect(self, root: Path, opts: PrepareOptions) -> Collected:
        rate_dir = f"wav{opts.sample_rate // 1000}k"
        corpus = self.find_root(root, rate_dir, [f"Libri{self.n_src}Mix"])
        base = corpus / rate_dir / opts.mode
        mix, targets, noise = self.task_folders[opts.task]
        folders = {"mix": mix, **{f"s{i + 1}": t for i, t in enumerate(targets)}}
        if noise:
            folders["noise"] = noise
        splits = [opts.train_split, "dev", "test"]
        rows: dict[str, list[Row]] = {}
        for split in splits:
            ids, lengths = self.read_metadata(root, base / "metadata" / f"mixture_{split}_{mix}.csv")
            rows[split] = match_by_name(self.name, root, base / split, folders, ids=ids, lengths=lengths)
        roles = {"train": opts.train_split, "valid": "dev", "test": "test"}
        return Collected(rows, roles, rate_dir, [], corpus)
