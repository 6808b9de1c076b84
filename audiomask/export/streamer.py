"""Run an exported streaming graph block by block: :class:`OnnxStreamer` (onnxruntime) and
:class:`TorchScriptStreamer`.

This is the loop a user's runtime writes, in numpy: keep the state tensors (zeros to start),
feed each full block of ``block_size`` samples with the state, keep the new state, drop the
first ``discard_samples`` output samples, and at the end pad with zeros until the output
covers the input. Everything it needs is in the file's metadata. Needs only numpy and
onnxruntime at run time (no torch), so it can be copied into a deployment as it is.

The output equals ``model.stream()`` fed the same blocks. ``flush()`` ends the signal by
feeding silence, which equals the offline pass over the whole signal for Conv-TasNet; for an
STFT model (the echo canceller) it equals the offline pass over the signal padded with zeros to
a multiple of the hop — the last ``length mod hop`` samples differ from the unpadded offline
pass, whose iSTFT normalises them by fewer frames.
"""

from __future__ import annotations

import json
import os
from typing import Callable, Sequence

import numpy as np

_DTYPES = {"float32": np.float32, "float64": np.float64}


class Streamer:
    """Block bookkeeping around a ``run(signals, state) -> (out, state)`` function.

    ``process(block)`` (echo cancellers: ``process(mic_block, far_block)``): blocks of any
    length ``[n]``; returns the output samples that are final so far, ``[n_src, m]`` float32.
    ``flush()`` returns the rest; all outputs together have the input's length.
    """

    def __init__(self, meta: dict[str, str], run: Callable[[list[np.ndarray], list[np.ndarray]],
                                                           tuple[np.ndarray, list[np.ndarray]]]) -> None:
        if meta.get("kind") != "streaming":
            raise ValueError("not a streaming export (export with --streaming)")
        self.meta, self._run = meta, run
        self.sample_rate = int(meta["sample_rate"])
        self.block_size = int(meta["block_size"])
        self.n_src = int(meta["n_src"])
        self.n_inputs = len(json.loads(meta["inputs"]))
        self.discard = int(meta["discard_samples"])
        self.latency_samples = int(meta["latency_samples"])
        self.reset()

    def reset(self) -> None:
        """Start a new signal: zero state, nothing pending."""
        shapes, dtypes = json.loads(self.meta["state_shapes"]), json.loads(self.meta["state_dtypes"])
        self.state = [np.zeros(s, dtype=_DTYPES[d]) for s, d in zip(shapes, dtypes)]
        self._pending = np.zeros((self.n_inputs, 0), dtype=np.float32)
        self._to_discard = self.discard
        self.received = self.emitted = 0
        self.finished = False

    def process(self, *blocks: np.ndarray) -> np.ndarray:
        if self.finished:
            raise RuntimeError("this stream was flushed; call reset() to start another")
        if len(blocks) != self.n_inputs:
            raise ValueError(f"expected {self.n_inputs} block(s) per call (inputs {self.meta['inputs']}), "
                             f"got {len(blocks)}")
        arrays = [np.asarray(b, dtype=np.float32).reshape(-1) for b in blocks]
        if len({a.shape[0] for a in arrays}) != 1:
            raise ValueError(f"the blocks differ in length: {[a.shape[0] for a in arrays]}")
        self.received += arrays[0].shape[0]
        self._pending = np.concatenate([self._pending, np.stack(arrays)], axis=1)
        return self._emit(self._drain())

    def flush(self) -> np.ndarray:
        """The rest of the signal: the pending samples and the model's tail, fed as zeros."""
        if self.finished:
            raise RuntimeError("this stream was already flushed")
        self.finished = True
        outs = [self._drain()]
        produced = self.emitted + outs[0].shape[-1] - self._to_discard
        while produced < self.received:
            pad = self.block_size - self._pending.shape[1]
            self._pending = np.pad(self._pending, ((0, 0), (0, pad)))
            outs.append(self._drain())
            produced += self.block_size
        out = self._emit(np.concatenate(outs, axis=1))
        keep = out.shape[1] - (self.emitted - self.received)
        self.emitted = self.received
        return out[:, :keep]

    def _drain(self) -> np.ndarray:
        outs = []
        while self._pending.shape[1] >= self.block_size:
            signals = [self._pending[i : i + 1, : self.block_size] for i in range(self.n_inputs)]
            out, self.state = self._run(signals, self.state)
            outs.append(out[0])
            self._pending = self._pending[:, self.block_size :]
        return np.concatenate(outs, axis=1) if outs else np.zeros((self.n_src, 0), dtype=np.float32)

    def _emit(self, out: np.ndarray) -> np.ndarray:
        drop = min(self._to_discard, out.shape[1])
        self._to_discard -= drop
        out = out[:, drop:]
        self.emitted += out.shape[1]
        return out


class OnnxStreamer(Streamer):
    """:class:`Streamer` over an exported streaming ``.onnx`` file, run by onnxruntime (CPU
    unless ``providers`` says otherwise; ``threads``: intra-op threads)."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None,
                 providers: Sequence[str] = ("CPUExecutionProvider",)) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        self.session = ort.InferenceSession(os.fspath(path), options, providers=list(providers))
        meta = dict(self.session.get_modelmeta().custom_metadata_map)
        names = [i.name for i in self.session.get_inputs()]
        n_inputs = len(json.loads(meta.get("inputs", "[]")))
        signal_names, state_names = names[:n_inputs], names[n_inputs:]

        def run(signals: list[np.ndarray], state: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
            feed = dict(zip(signal_names, signals))
            feed.update(zip(state_names, state))
            out, *new_state = self.session.run(None, feed)
            return out, new_state

        super().__init__(meta, run)


class TorchScriptStreamer(Streamer):
    """:class:`Streamer` over an exported streaming TorchScript file."""

    def __init__(self, path: str | os.PathLike) -> None:
        import torch

        from audiomask.export.files import META_FILE, load_torchscript

        extra = {META_FILE: ""}
        self.module = load_torchscript(path, extra)
        meta = json.loads(extra[META_FILE] or "{}")

        def run(signals: list[np.ndarray], state: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
            with torch.no_grad():
                out, *new_state = self.module(*(torch.from_numpy(np.ascontiguousarray(a)) for a in signals + state))
            return out.numpy(), [t.numpy() for t in new_state]

        super().__init__(meta, run)


def open_streamer(path: str | os.PathLike) -> Streamer:
    """The streamer for an exported file: TorchScript archives are zip files, the rest ONNX."""
    with open(path, "rb") as f:
        is_zip = f.read(4) == b"PK\x03\x04"
    return TorchScriptStreamer(path) if is_zip else OnnxStreamer(path)
