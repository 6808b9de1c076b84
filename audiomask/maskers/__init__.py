"""Maskers: representation ``[batch, ...]`` → masks ``[batch, n_src, ...]``."""

from audiomask.maskers.tcn import TCNMasker

__all__ = ["TCNMasker"]
