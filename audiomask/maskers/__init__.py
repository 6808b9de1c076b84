"""Maskers: representation ``[batch, ...]`` → masks ``[batch, n_src, ...]``."""

from audiomask.maskers.d3net import D3NetAECMasker
from audiomask.maskers.mossformer import MossFormerMasker
from audiomask.maskers.mossformer2 import MossFormer2Masker
from audiomask.maskers.tcn import TCNMasker
from audiomask.maskers.tiger import TIGERMasker

__all__ = ["D3NetAECMasker", "TCNMasker", "TIGERMasker", "MossFormerMasker", "MossFormer2Masker"]
