"""Process-wide settings that make long CPU inference fast.

glibc's ``malloc`` serves every large block (an activation of a long input easily is tens of
MB) with a fresh ``mmap`` and returns it with ``munmap`` when freed, so each op of a forward
pass page-faults its output into existence again: measured on 2 cores, a 20 s Conv-TasNet
forward spent ~4 s of its ~10 s CPU time in the kernel and took 21 s; keeping freed blocks in
the heap instead (no ``mmap`` for large blocks, no trimming) brought it to 10 s. This is the
``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=…`` setting, applied at
run time with ``mallopt``. The cost: memory freed by the process is kept for reuse rather
than returned to the system (the peak RSS does not change).

The ``audiomask`` command applies it at start (``AUDIOMASK_TUNE_MALLOC=0`` turns it off);
library users call :func:`tune_allocator` once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_applied = False


def tune_allocator() -> bool:
    """Keep large freed blocks in glibc's heap (``M_MMAP_MAX = 0``, ``M_TRIM_THRESHOLD`` at its
    maximum). Returns whether it was applied: ``False`` off Linux/glibc, or when
    ``AUDIOMASK_TUNE_MALLOC=0``. Safe to call more than once."""
    global _applied
    if _applied:
        return True
    if os.environ.get("AUDIOMASK_TUNE_MALLOC", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    return _applied
