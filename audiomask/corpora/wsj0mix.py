"""wsj0-2mix and wsj0-3mix, as written by the standard generation scripts.

Layout (``create_wav_2speakers.m`` / ``create_wav_3speakers.m`` from MERL, or their Python
port pywsj0-mix): ``ROOT/{wav8k,wav16k}/{min,max}/{tr,cv,tt}/{mix,s1,s2[,s3]}/NAME.wav``, the
same ``NAME`` (``<utt1>_<snr1>_<utt2>_<snr2>[_<utt3>_<snr3>].wav``) in every folder. ``ROOT``
is the ``2speakers`` / ``3speakers`` folder or its parent. The standard sets hold 20,000 /
5,000 / 3,000 mixtures (tr / cv / tt); other counts are reported as warnings.
"""

from __future__ import annotations

from pathlib import Path

from audiomask.corpora.common import Collected, PrepareOptions, Preparer, Row, match_by_name

WSJ0MIX_SPLITS = {"tr": 20000, "cv": 5000, "tt": 3000}
GENERATION = ("Generate with the MERL scripts (https://www.merl.com/research/highlights/deep-clustering, "
              "create-speaker-mixtures.zip: create_wav_2speakers.m / create_wav_3speakers.m, needs the "
              "licensed WSJ0 corpus, LDC93S6A) or their Python port https://github.com/mpariente/pywsj0-mix")


class WSJ0Mix(Preparer):
    """wsj0-{2,3}mix: clean overlapped WSJ0 speakers (task ``sep_clean``)."""

    splits = WSJ0MIX_SPLITS
    roles = {"train": "tr", "valid": "cv", "test": "tt"}
    generation = GENERATION

    def __init__(self, n_src: int) -> None:
        self.n_src = n_src
        self.name = f"wsj0-{n_src}mix"
        self.title = f"wsj0-{n_src}mix ({n_src} clean WSJ0 speakers; MERL / pywsj0-mix generation scripts)"
        sources = ",".join(f"s{i + 1}" for i in range(n_src))
        self.tasks = {"sep_clean": f"mix -> {sources}"}
        self.default_task = "sep_clean"
        self.layout = f"ROOT/{{wav8k,wav16k}}/{{min,max}}/{{tr,cv,tt}}/{{mix,{sources}}}/NAME.wav"

    def collect(self, root: Path, opts: PrepareOptions) -> Collected:
        base = self.find_root(root, f"wav{opts.sample_rate // 1000}k", [f"{self.n_src}speakers"])
        rate_dir = f"wav{opts.sample_rate // 1000}k"
        folders = {"mix": "mix", **{f"s{i + 1}": f"s{i + 1}" for i in range(self.n_src)}}
        split_dir = base / rate_dir / opts.mode
        rows: dict[str, list[Row]] = {s: match_by_name(self.name, root, split_dir / s, folders) for s in self.splits}
        warnings = self.count_warnings(self.name, {s: len(r) for s, r in rows.items()}, self.splits)
        return Collected(rows, dict(self.roles), rate_dir, warnings, base)
