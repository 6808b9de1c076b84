"""Real-time separation from Python: push blocks in, pull separated blocks out.

:class:`Stream` wraps an exact stateful :class:`~audiomask.streaming.StreamingSession` for use
from a sound-card callback: the callback only copies samples into a preallocated ring buffer
and out of another (no allocation, no model work, no locks held while computing); a worker
thread runs the model one block at a time and records how long each block took against its
deadline (the block's duration).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import torch

from audiomask.streaming.blocks import as_float_block, check_nonfinite_policy, check_sample_rate, finite_block


class RingBuffer:
    """Fixed-size single-producer/single-consumer FIFO of ``[channels, capacity]`` float32."""

    def __init__(self, channels: int, capacity: int) -> None:
        self.data = np.zeros((channels, capacity), dtype=np.float32)
        self.capacity, self.read_pos, self.write_pos = capacity, 0, 0
        self.lock = threading.Lock()

    def __len__(self) -> int:
        return self.write_pos - self.read_pos

    def write(self, block: np.ndarray) -> int:
        """Append ``block [channels, n]``; returns how many samples did not fit (dropped)."""
        with self.lock:
            n = min(block.shape[-1], self.capacity - len(self))
            start = self.write_pos % self.capacity
            first = min(n, self.capacity - start)
            self.data[:, start : start + first] = block[:, :first]
            self.data[:, : n - first] = block[:, first:n]
            self.write_pos += n
            return block.shape[-1] - n

    def read_into(self, out: np.ndarray) -> int:
        """Fill ``out [channels, n]`` from the buffer; returns how many samples were missing
        (those are set to zero)."""
        with self.lock:
            n = min(out.shape[-1], len(self))
            start = self.read_pos % self.capacity
            first = min(n, self.capacity - start)
            out[:, :first] = self.data[:, start : start + first]
            out[:, first:n] = self.data[:, : n - first]
            out[:, n:] = 0.0
            self.read_pos += n
            return out.shape[-1] - n


@dataclass
class LatencyReport:
    """What a :class:`Stream` measured. Times in milliseconds."""

    sample_rate: int
    block_size: int
    algorithmic_latency_samples: int
    blocks: int
    mean_block_ms: float
    p99_block_ms: float
    max_block_ms: float
    deadline_ms: float
    deadline_misses: int
    underruns: int
    overruns: int
    nonfinite_samples: int = 0  # NaN/Inf input samples replaced by 0 (``nonfinite="zero"``)

    @property
    def algorithmic_latency_ms(self) -> float:
        return 1000.0 * self.algorithmic_latency_samples / self.sample_rate

    @property
    def real_time_factor(self) -> float:
        return self.mean_block_ms / self.deadline_ms if self.deadline_ms else float("nan")

    def __str__(self) -> str:
        return "\n".join([
            f"block            {self.block_size} samples ({self.deadline_ms:.1f} ms deadline)",
            f"algorithmic lat. {self.algorithmic_latency_samples} samples ({self.algorithmic_latency_ms:.2f} ms)"
            f" + one block of buffering",
            f"processing       mean {self.mean_block_ms:.2f} ms, p99 {self.p99_block_ms:.2f} ms,"
            f" max {self.max_block_ms:.2f} ms over {self.blocks} blocks",
            f"real-time factor {self.real_time_factor:.3f}",
            f"deadline misses  {self.deadline_misses}",
            f"under/overruns   {self.underruns} / {self.overruns}",
            f"non-finite input {self.nonfinite_samples} samples zeroed",
        ])


class Stream:
    """Real-time separation with a causal model.

    ``push(block)`` (e.g. from an input callback) queues ``[n]`` samples; the worker separates
    whole blocks of ``block_size``; ``pull(n)`` returns ``[n_src, n]`` separated samples (zeros
    where the worker has not caught up: an underrun). ``callback`` is a ready-made
    ``sounddevice`` duplex callback. Use as a context manager, or ``start()``/``stop()``.

    ``push`` takes what :class:`~audiomask.streaming.StreamingSession` takes (numpy or torch,
    integer PCM scaled), mono: ``[n]`` (or ``[n, 1]``/``[1, n]``), at the model's rate
    (``sample_rate`` is checked when given). Samples that are NaN/Inf are refused there, in the
    caller's thread, before anything is queued (``nonfinite="error"``), or set to 0 and counted
    in the report (``"zero"``).

    >>> with Stream(model, block_size=80) as s:   # 10 ms at 8 kHz
    ...     s.push(mic_block); out = s.pull(80)
    """

    def __init__(self, model: torch.nn.Module, block_size: int, buffer_s: float = 2.0,
                 threads: int | None = None, sample_rate: int | None = None, nonfinite: str = "error") -> None:
        check_sample_rate(sample_rate, model)
        self.nonfinite = check_nonfinite_policy(nonfinite)
        self.model = model.eval()
        self.session = model.stream()
        self.block_size = int(block_size)
        if self.block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        self.sample_rate = model.sample_rate
        capacity = max(int(buffer_s * self.sample_rate), 4 * self.block_size)
        self.inbox = RingBuffer(1, capacity)
        self.outbox = RingBuffer(model.n_src, capacity)
        self._block = np.zeros((1, self.block_size), dtype=np.float32)
        self._wake = threading.Event()
        self._running = False
        self._thread: threading.Thread | None = None
        self._threads = threads
        self.block_ms: list[float] = []
        self.underruns = self.overruns = self.nonfinite_samples = 0

    # -- audio side (callbacks): copies only ----------------------------------------------------
    def push(self, samples: np.ndarray | torch.Tensor) -> None:
        x = as_float_block(samples, "pushed samples")
        if x.dim() > 2 or (x.dim() == 2 and 1 not in x.shape):
            raise ValueError(f"pushed samples: expected mono [n], got shape {tuple(x.shape)}")
        x, zeroed = finite_block(x.reshape(1, -1), self.nonfinite, "pushed samples")
        self.nonfinite_samples += zeroed
        dropped = self.inbox.write(x.cpu().numpy())
        self.overruns += int(dropped > 0)
        self._wake.set()

    def pull(self, n: int, out: np.ndarray | None = None) -> np.ndarray:
        out = np.empty((self.model.n_src, n), dtype=np.float32) if out is None else out
        self.underruns += int(self.outbox.read_into(out) > 0)
        return out

    def callback(self, indata, outdata, frames, time_info, status) -> None:  # sounddevice duplex
        self.push(indata[:, 0])
        self.pull(frames, outdata.T)

    # -- worker ------------------------------------------------------------------------------
    def process_available(self) -> int:
        """Separate every whole block waiting in the inbox (the worker's loop body); returns
        the number of blocks done. Callable directly for offline simulation."""
        done = 0
        while len(self.inbox) >= self.block_size:
            self.inbox.read_into(self._block)
            t0 = time.perf_counter()
            out = self.session.process(torch.from_numpy(self._block[0]))
            self.block_ms.append(1000.0 * (time.perf_counter() - t0))
            self.overruns += int(self.outbox.write(out.numpy()) > 0)
            done += 1
        return done

    def _work(self) -> None:
        if self._threads:
            torch.set_num_threads(self._threads)
        while self._running:
            self._wake.wait(0.05)
            self._wake.clear()
            self.process_available()

    def start(self) -> "Stream":
        self._running = True
        self._thread = threading.Thread(target=self._work, name="audiomask-stream", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._running = False
        self._wake.set()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> "Stream":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def report(self) -> LatencyReport:
        times = np.asarray(self.block_ms or [0.0])
        deadline = 1000.0 * self.block_size / self.sample_rate
        return LatencyReport(
            sample_rate=self.sample_rate, block_size=self.block_size,
            algorithmic_latency_samples=self.session.latency_samples, blocks=len(self.block_ms),
            mean_block_ms=float(times.mean()), p99_block_ms=float(np.percentile(times, 99)),
            max_block_ms=float(times.max()), deadline_ms=deadline,
            deadline_misses=int((times > deadline).sum()) if self.block_ms else 0,
            underruns=self.underruns, overruns=self.overruns, nonfinite_samples=self.nonfinite_samples)


def simulate(model: torch.nn.Module, wav: torch.Tensor, block_size: int, threads: int | None = None,
             progress: bool = False) -> tuple[torch.Tensor, LatencyReport]:
    """Feed ``wav [T]`` (at the model's rate) through a :class:`Stream` block by block as a
    sound card would (each block's processing timed against its deadline), then flush. Returns
    the separated ``[n_src, T]`` signal (equal to the offline causal pass) and the report.
    ``progress``: a tqdm bar on stderr, in seconds of audio streamed."""
    from tqdm import tqdm

    if threads:
        torch.set_num_threads(threads)
    stream = Stream(model, block_size, buffer_s=wav.shape[-1] / model.sample_rate + 1.0)
    x = wav.numpy().astype(np.float32)
    outs = []
    bar = tqdm(total=len(x), unit_scale=1 / model.sample_rate, desc="streaming", disable=not progress,
               dynamic_ncols=True, bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} s audio [{elapsed}<{remaining}]")
    for start in range(0, len(x), block_size):
        stream.push(x[start : start + block_size])
        stream.process_available()
        bar.update(min(block_size, len(x) - start))
        ready = len(stream.outbox)
        if ready:
            outs.append(stream.pull(ready).copy())
    tail = len(stream.inbox)
    if tail:  # the last partial block
        rest = np.zeros((1, tail), dtype=np.float32)
        stream.inbox.read_into(rest)
        outs.append(stream.session.process(torch.from_numpy(rest[0])).numpy())
    outs.append(stream.session.flush().numpy())
    bar.close()
    return torch.from_numpy(np.concatenate(outs, axis=-1)), stream.report()
