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

A heap that keeps what it frees has its own cost: a large block freed in the middle of it is
split for small requests, and the next block of the same size goes above it, so the peak
grows. The few large buffers a forward pass keeps for its whole length (the CPU fast path's
activations) therefore live outside the heap, in their own memory maps
(:func:`mapped_zeros`), returned to the system when freed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import mmap
import os
import sys

import torch

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


#: buffers smaller than this come from the heap (:func:`mapped_zeros`)
MAPPED_MIN_BYTES = 1 << 20


def mapped_zeros(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A zero tensor of ``shape`` in its own anonymous memory map, outside ``malloc``'s heap:
    its pages are made at once (``MAP_POPULATE`` where there is one) and go back to the
    system when the tensor is freed. Below :data:`MAPPED_MIN_BYTES`, or where anonymous maps
    are missing, it is ``torch.zeros``."""
    count = math.prod(shape)
    nbytes = count * torch.empty((), dtype=dtype).element_size()
    if nbytes < MAPPED_MIN_BYTES or not hasattr(mmap, "MAP_ANONYMOUS"):
        return torch.zeros(shape, dtype=dtype)
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_POPULATE", 0)
    return torch.frombuffer(mmap.mmap(-1, nbytes, flags=flags), dtype=dtype, count=count).view(shape)


#: streaming blocks up to this long run on one thread: waking a thread team costs more than it saves
STREAM_ONE_THREAD_MS = 40.0


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def idle_cores() -> int:
    """Available cores minus the 1-minute load average (rounded), at least 1."""
    cores = available_cores()
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):
        return cores
    return max(1, min(cores, round(cores - busy)))


def choose_threads(requested: int | None = None, work: str = "batch", block_ms: float | None = None) -> int:
    """The number of PyTorch threads for a job — one policy for every command that computes.

    * ``requested`` (``--threads N``, N >= 1) wins;
    * else ``OMP_NUM_THREADS``, when set to a positive integer;
    * ``work="stream"`` with blocks of at most :data:`STREAM_ONE_THREAD_MS` ms: 1 thread (a
      10 ms block is far too little work to share, and every missed wake-up is a missed deadline);
    * otherwise (batch work, longer stream blocks): every available core that is idle
      (:func:`idle_cores`), so a busy machine is not oversubscribed.
    """
    if work not in ("batch", "stream"):
        raise ValueError(f"work must be 'batch' or 'stream', got {work!r}")
    if requested is not None:
        if int(requested) < 1:
            raise ValueError(f"threads must be >= 1, got {requested}")
        return int(requested)
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) >= 1:
        return int(env)
    if work == "stream" and (block_ms is None or block_ms <= STREAM_ONE_THREAD_MS):
        return 1
    return idle_cores()


def apply_threads(requested: int | None = None, work: str = "batch", block_ms: float | None = None) -> int:
    """:func:`choose_threads`, then ``torch.set_num_threads``; returns the count."""
    n = choose_threads(requested, work, block_ms)
    torch.set_num_threads(n)
    return n
