"""Benchmark corpora: validate a user's copy and write the manifests the recipes train on.

``PREPARERS`` maps each ``audiomask prepare`` name to its :class:`~audiomask.corpora.common.Preparer`
(one module per corpus family: :mod:`.wsj0mix`, :mod:`.librimix`, :mod:`.wham` (WHAM! and
WHAMR!), :mod:`.echoset`, :mod:`.aec_challenge`); :mod:`.common` holds what they share
(matching files across folders, header checks, manifest writing), :mod:`.aec_eval` scores an
echo canceller on a prepared AEC manifest, :mod:`.cli` is ``audiomask prepare``. The runnable
recipes (configs, ``run.sh``, results tables) are in the repository's ``recipes/<dataset>/``
folders.

>>> from audiomask.corpora import prepare
>>> result = prepare("wham", "/data/wham", "data/wham", sample_rate=8000, mode="min")
>>> result.manifests["tt"]           # data/wham/tt.csv: id,mix,s1,s2,noise
"""

from __future__ import annotations

import os

from audiomask.corpora.aec_challenge import AECChallenge
from audiomask.corpora.common import PrepareError, PrepareOptions, Preparer, PrepareResult
from audiomask.corpora.echoset import EchoSet
from audiomask.corpora.librimix import LibriMix
from audiomask.corpora.wham import WHAM, WHAMR
from audiomask.corpora.wsj0mix import WSJ0Mix

__all__ = ["PREPARERS", "prepare", "PrepareError", "PrepareOptions", "PrepareResult", "Preparer"]

PREPARERS: dict[str, Preparer] = {p.name: p for p in (
    WSJ0Mix(2), WSJ0Mix(3), LibriMix(2), LibriMix(3), WHAM(), WHAMR(), EchoSet(), AECChallenge())}


def prepare(dataset: str, root: str | os.PathLike, out_dir: str | os.PathLike, *,
            sample_rate: int | None = None, mode: str | None = None, task: str | None = None,
            train_split: str | None = None, jobs: int = 8, progress: bool = True) -> PrepareResult:
    """Validate the corpus ``dataset`` at ``root`` and write its manifests to ``out_dir``
    (``None`` options take the corpus' defaults). Raises :class:`PrepareError` (one line
    naming the offending files and their count)."""
    if dataset not in PREPARERS:
        raise PrepareError(f"unknown dataset {dataset!r}; choose one of {', '.join(PREPARERS)}")
    opts = PrepareOptions(sample_rate, mode, task, train_split, jobs, progress)
    return PREPARERS[dataset].prepare(root, out_dir, opts)
