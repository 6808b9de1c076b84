"""Opening exported files: the metadata a TorchScript archive or an ONNX file carries, TorchScript
loading without its deprecation warning, onnxruntime CPU sessions, offline runs."""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from audiomask.export.graphs import ExportError

META_FILE = "audiomask.json"  # the metadata inside a TorchScript archive


def load_torchscript(path: str | os.PathLike, extra_files: dict[str, str] | None = None) -> torch.jit.ScriptModule:
    """``torch.jit.load`` without its deprecation warning (the user asked for TorchScript)."""
    with no_jit_deprecation():
        return torch.jit.load(os.fspath(path), _extra_files=extra_files if extra_files is not None else {})


@contextlib.contextmanager
def no_jit_deprecation() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit", category=DeprecationWarning)
        yield


def run_offline(path: str | os.PathLike, fmt: str, *signals: np.ndarray) -> np.ndarray:
    """Run an exported offline file on float32 ``[batch, T]`` inputs (onnxruntime, CPU)."""
    if fmt == "onnx":
        session = onnx_session(path)
        names = [i.name for i in session.get_inputs()]
        return session.run(None, {n: np.ascontiguousarray(s, dtype=np.float32) for n, s in zip(names, signals)})[0]
    module = load_torchscript(path)
    with torch.no_grad():
        return module(*(torch.from_numpy(np.asarray(s, dtype=np.float32)) for s in signals)).numpy()


def onnx_session(path: str | os.PathLike, threads: int | None = None):
    """An onnxruntime CPU session (``threads``: intra-op threads; default: onnxruntime's)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The audiomask metadata of an exported ``.onnx`` or TorchScript file."""
    path = Path(path)
    try:
        if _is_zip(path):  # TorchScript archives are zip files
            extra = {META_FILE: ""}
            load_torchscript(path, extra)
            meta = json.loads(extra[META_FILE] or "{}")
        else:
            meta = dict(onnx_session(path).get_modelmeta().custom_metadata_map)
    except (OSError, RuntimeError, ValueError) as e:
        raise ExportError(f"{path}: not an exported model ({e})") from None
    if "kind" not in meta:
        raise ExportError(f"{path}: no audiomask metadata (not exported by audiomask export)")
    return meta


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"
