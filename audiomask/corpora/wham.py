"""WHAM! and WHAMR!: wsj0-2mix with real ambient noise (and, in WHAMR!, reverberation).

Both are generated from WSJ0 and the WHAM! noise corpus by ``create_wham_from_scratch.py``
(``wham_scripts`` / ``whamr_scripts`` from http://wham.whisper.ai), which writes
``OUT/wav{8k,16k}/{min,max}/{tr,cv,tt}/<folder>/NAME.wav`` with the wsj0-2mix file names:

* WHAM!: ``mix_clean``, ``mix_both`` (speech + noise), ``mix_single`` (speaker 1 + noise),
  ``s1``, ``s2``, ``noise``;
* WHAMR!: ``mix_{clean,both,single}_{anechoic,reverb}``, ``s1_anechoic``, ``s2_anechoic``,
  ``s1_reverb``, ``s2_reverb``, ``noise``.

Tasks (the folders a task reads must all be there; others may be absent): WHAM!
``sep_clean`` (mix_clean → s1, s2), ``sep_noisy`` (mix_both → s1, s2; the WHAM! benchmark),
``enh_single`` (mix_single → s1); WHAMR! ``sep_clean`` (mix_clean_anechoic), ``sep_noisy``
(mix_both_anechoic), ``sep_reverb`` (mix_clean_reverb), ``sep_reverb_noisy`` (mix_both_reverb;
the WHAMR! benchmark) — all → ``s1_anechoic``, ``s2_anechoic``: separation and
dereverberation. The noise file is listed with every mixture that contains noise.
WHAMR! must be generated mono (the scripts' default ``MONO = True``); binaural files are refused.
"""

from __future__ import annotations

from pathlib import Path

from audiomask.corpora.common import Collected, PrepareOptions, Preparer, Row, match_by_name
from audiomask.corpora.wsj0mix import WSJ0MIX_SPLITS

WHAM_TASKS = {  # task -> (mixture folder, target folders, noise folder or None)
    "sep_clean": ("mix_clean", ("s1", "s2"), None),
    "sep_noisy": ("mix_both", ("s1", "s2"), "noise"),
    "enh_single": ("mix_single", ("s1",), "noise"),
}
WHAMR_TASKS = {
    "sep_clean": ("mix_clean_anechoic", ("s1_anechoic", "s2_anechoic"), None),
    "sep_noisy": ("mix_both_anechoic", ("s1_anechoic", "s2_anechoic"), "noise"),
    "sep_reverb": ("mix_clean_reverb", ("s1_anechoic", "s2_anechoic"), None),
    "sep_reverb_noisy": ("mix_both_reverb", ("s1_anechoic", "s2_anechoic"), "noise"),
}


class _WHAMFamily(Preparer):
    task_folders: dict[str, tuple[str, tuple[str, ...], str | None]] = {}
    roles = {"train": "tr", "valid": "cv", "test": "tt"}

    def collect(self, root: Path, opts: PrepareOptions) -> Collected:
        rate_dir = f"wav{opts.sample_rate // 1000}k"
        base = self.find_root(root, rate_dir, [self.name])
        mix, targets, noise = self.task_folders[opts.task]
        folders = {"mix": mix, **{f"s{i + 1}": t for i, t in enumerate(targets)}}
        if noise:
            folders["noise"] = noise
        split_dir = base / rate_dir / opts.mode
        rows: dict[str, list[Row]] = {s: match_by_name(self.name, root, split_dir / s, folders)
                                      for s in WSJ0MIX_SPLITS}
        warnings = self.count_warnings(self.name, {s: len(r) for s, r in rows.items()}, WSJ0MIX_SPLITS)
        return Collected(rows, dict(self.roles), rate_dir, warnings, base)


def _describe(tasks: dict[str, tuple[str, tuple[str, ...], str | None]]) -> dict[str, str]:
    return {t: f"{m} -> {','.join(s)}" + (f" (+{n})" if n else "") for t, (m, s, n) in tasks.items()}


class WHAM(_WHAMFamily):
    name = "wham"
    title = "WHAM! (wsj0-2mix + WHAM! noise; wham_scripts)"
    task_folders = WHAM_TASKS
    tasks = _describe(WHAM_TASKS)
    default_task = "sep_noisy"
    layout = "ROOT/{wav8k,wav16k}/{min,max}/{tr,cv,tt}/{mix_clean,mix_both,mix_single,s1,s2,noise}/NAME.wav"
    generation = ("Generate with wham_scripts (http://wham.whisper.ai, https://storage.googleapis.com/"
                  "whisper-public/wham_scripts.tar.gz): python create_wham_from_scratch.py --wsj0-root WSJ0 "
                  "--wham-noise-root wham_noise --output-dir ROOT (needs WSJ0, LDC93S6A, and wham_noise.zip)")


class WHAMR(_WHAMFamily):
    name = "whamr"
    title = "WHAMR! (WHAM! with reverberation; whamr_scripts)"
    task_folders = WHAMR_TASKS
    tasks = _describe(WHAMR_TASKS)
    default_task = "sep_reverb_noisy"
    layout = ("ROOT/{wav8k,wav16k}/{min,max}/{tr,cv,tt}/{mix_{clean,both,single}_{anechoic,reverb},"
              "s{1,2}_{anechoic,reverb},noise}/NAME.wav")
    generation = ("Generate with whamr_scripts (http://wham.whisper.ai, https://storage.googleapis.com/"
                  "whisper-public/whamr_scripts.tar.gz): python create_wham_from_scratch.py --wsj0-root WSJ0 "
                  "--wham-noise-root wham_noise --output-dir ROOT (mono, the default; needs WSJ0 and wham_noise)")
