"""Export a model to ONNX or TorchScript, offline (any length) or as a streaming step.

``export_model(model, path, format="onnx", streaming=False, block_ms=10)`` picks the graph
(:mod:`audiomask.export.graphs`), exports it — ONNX through ``torch.export`` with a symbolic
batch and length, TorchScript by tracing — writes the file atomically with metadata (sample
rate, sources, block size, the state's names, shapes and dtypes: enough to write a runtime
loop from the file alone), and by default checks the file against the PyTorch model before
returning.

What cannot be exported, and why (:func:`check_exportable` raises :class:`ExportError` with
these reasons):

* Streaming, any non-causal model (Conv-TasNet with gLN, TIGER, MossFormer, MossFormer2,
  their non-causal presets): every output sample depends on the whole input (global norms,
  full-sequence attention), so no fixed-size state can carry what the next block needs. Export
  them offline, or run them chunked.
* Streaming, causal MossFormer / MossFormer2: causal offline, but without a stateful step
  (their chunked attention and FSMN have no ``step`` yet); export offline.
* Streaming, Conv-TasNet with ``"valid"`` framing or ``L ≠ 2·S``, or an echo canceller with a
  reflect-padded STFT or ``hop ≠ n_fft/2``: the encoder's state would change shape between
  blocks. Blocks must be a multiple of the hop.
* Offline echo cancellers export the near-end estimate only (``return_all`` is not exported).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from audiomask.export.files import META_FILE, no_jit_deprecation, read_metadata, run_offline
from audiomask.export.graphs import (
    AECStream,
    ConvTasNetStream,
    ExportError,
    OfflineAEC,
    OfflineSeparator,
    OfflineTIGER,
    StreamGraph,
    tracing_mode,
)
from audiomask.fileio import atomic_target
from audiomask.tasks import ECHO_CANCELLATION, task_of

FORMATS = ("onnx", "torchscript")
OPSET = 18
TOLERANCE = 1e-4  # max |exported - PyTorch| that verification accepts

STREAMING_USAGE = (
    "Run `out, *state = graph(block, *state)` once per block of block_size samples (float32 [1, "
    "block_size]; echo cancellers also far_block), starting from zeros of state_shapes/state_dtypes "
    "and feeding each state_out_i back as state_i. out is [1, n_src, block_size]. Drop the first "
    "discard_samples output samples (the model's left padding). To end a signal, pad its last block "
    "with zeros and feed zero blocks until the output (after the discarded samples) covers the input. "
    "audiomask.export.OnnxStreamer does all of this."
)


def check_exportable(model: nn.Module, streaming: bool) -> None:
    """Raise :class:`ExportError` when ``model`` cannot be exported this way (see the module
    docstring for the reasons)."""
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise ExportError(f"{model.name} is on {device}: export from the CPU (model.cpu()); the exported "
                          "file runs on any device its runtime supports")
    if streaming:
        if not model.causal:
            raise ExportError(
                f"{model.name} is not causal: every output sample depends on the whole input (global "
                "norms or full-sequence attention), so no fixed-size state can carry it from block to "
                "block. Export it offline (without --streaming), or run it chunked.")
        if _streaming_graph_class(model) is None:
            raise ExportError(
                f"{model.name}: causal, but without a stateful streaming step (only Conv-TasNet and the "
                "D3Net echo canceller stream exactly); export it offline (without --streaming)")
        return
    if _offline_graph_class(model) is None:
        raise ExportError(f"{model.name}: no export graph for this model family")


def _offline_graph_class(model: nn.Module) -> type[nn.Module] | None:
    """The offline graph for ``model``'s task and parts (``None``: no graph holds it)."""
    from audiomask.filterbanks import ConvEncoder
    from audiomask.maskers.tiger import TIGERMasker

    if task_of(model) is ECHO_CANCELLATION:
        return OfflineAEC
    if isinstance(model.masker, TIGERMasker):
        return OfflineTIGER
    if isinstance(model.encoder, ConvEncoder):
        return OfflineSeparator
    return None


def _streaming_graph_class(model: nn.Module) -> type[StreamGraph] | None:
    """The streaming step graph for ``model``'s task and parts: the echo canceller's, or the
    conv encoder + TCN masker one (``None``: no stateful step graph holds it)."""
    from audiomask.filterbanks import ConvEncoder
    from audiomask.maskers.tcn import TCNMasker

    if task_of(model) is ECHO_CANCELLATION:
        return AECStream
    if isinstance(model.encoder, ConvEncoder) and isinstance(model.masker, TCNMasker):
        return ConvTasNetStream
    return None


def build_graph(model: nn.Module, streaming: bool = False, block_ms: float = 10.0) -> nn.Module:
    """The module that gets exported (see :mod:`audiomask.export.graphs`)."""
    check_exportable(model, streaming)
    model = model.eval()
    if not streaming:
        return _offline_graph_class(model)(model).eval()
    block = round(block_ms * model.sample_rate / 1000)
    if block <= 0 or abs(block - block_ms * model.sample_rate / 1000) > 1e-6:
        raise ExportError(f"--block-ms {block_ms:g} is not a whole number of samples at {model.sample_rate} Hz")
    return _streaming_graph_class(model)(model, block).eval()


# -- metadata ------------------------------------------------------------------------------------
def metadata(model: nn.Module, graph: nn.Module, fmt: str) -> dict[str, str]:
    """String → string facts written into the exported file."""
    from audiomask import __version__

    meta = {
        "producer": f"audiomask {__version__}",
        "format": fmt,
        "model": model.name,
        "config": json.dumps(dataclasses.asdict(model.config), sort_keys=True),
        "sample_rate": str(model.sample_rate),
        "task": task_of(model).name,
    }
    if isinstance(graph, StreamGraph):
        state = graph.init_state()
        meta.update({
            "kind": "streaming",
            "n_src": str(graph.n_out),
            "block_size": str(graph.block),
            "inputs": json.dumps(list(graph.input_names)),
            "state_names": json.dumps(graph.state_names),
            "state_shapes": json.dumps([list(t.shape) for t in state]),
            "state_dtypes": json.dumps([str(t.dtype).replace("torch.", "") for t in state]),
            "discard_samples": str(graph.discard),
            "latency_samples": str(graph.latency),
            "usage": STREAMING_USAGE,
        })
    else:
        aec = isinstance(graph, OfflineAEC)
        meta.update({
            "kind": "offline",
            "n_src": "1" if aec else str(model.n_src),
            "inputs": json.dumps(["mic", "far"] if aec else ["mix"]),
            "min_length": str(model.min_length),
            "usage": ("est = graph(" + ("mic, far" if aec else "mix") + "): float32 [batch, T] each, at "
                      "sample_rate, T >= min_length; est is [batch, n_src, T]"),
        })
    return meta


def _io_names(graph: nn.Module) -> tuple[list[str], list[str]]:
    if isinstance(graph, StreamGraph):
        n = len(graph.state_names)
        return (list(graph.input_names) + [f"state_{i}" for i in range(n)],
                ["out"] + [f"state_out_{i}" for i in range(n)])
    if isinstance(graph, OfflineAEC):
        return ["mic", "far"], ["est"]
    return ["mix"], ["est"]


def _example_inputs(model: nn.Module, graph: nn.Module) -> tuple[torch.Tensor, ...]:
    if isinstance(graph, StreamGraph):
        return graph.example_inputs()
    gen = torch.Generator().manual_seed(0)
    length = max(model.sample_rate + 123, 4 * model.min_length + 3)
    n_inputs = 2 if isinstance(graph, OfflineAEC) else 1
    return tuple(0.1 * torch.randn(2, length, generator=gen) for _ in range(n_inputs))


# -- export --------------------------------------------------------------------------------------
def export_model(model: nn.Module, path: str | os.PathLike, fmt: str = "onnx", streaming: bool = False,
                 block_ms: float = 10.0, verify: bool = True, opset: int = OPSET,
                 optimize: bool = True, stage: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Export ``model`` to ``path``; returns the metadata written (plus ``max_abs_error`` of the
    verification when ``verify``).

    Offline graphs take ``[batch, T]`` of any batch and any ``T >= min_length``; streaming
    graphs one block of ``block_ms`` and the state (see :data:`STREAMING_USAGE`). With
    ``verify`` the written file is run (onnxruntime / ``torch.jit.load``) on random input and
    compared with the PyTorch model: offline at three lengths and two batch sizes, streaming
    block by block against ``model.stream()``; a difference above 1e-4 raises
    :class:`ExportError` and the file is not kept. ``stage`` is called with a one-line
    description as each step begins (the export of a large model takes minutes).
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {FORMATS}")
    say = stage or (lambda text: None)
    graph = build_graph(model, streaming, block_ms)
    meta = metadata(model, graph, fmt)
    path = Path(path)
    with atomic_target(path) as tmp:
        with tracing_mode(), torch.no_grad():
            if fmt == "onnx":
                _export_onnx(model, graph, tmp, meta, opset, optimize, say)
            else:
                say("tracing the graph (torch.jit.trace)")
                _export_torchscript(model, graph, tmp, meta)
        if verify:
            say(f"verifying the file against the PyTorch model ({'block by block' if streaming else '3 lengths, 2 batch sizes'})")
            meta["max_abs_error"] = str(verify_export(model, tmp, fmt))
    return meta


def _export_onnx(model: nn.Module, graph: nn.Module, target: Path, meta: dict[str, str], opset: int,
                 optimize: bool = True, say: Callable[[str], None] = lambda text: None) -> None:
    import onnx

    inputs = _example_inputs(model, graph)
    input_names, output_names = _io_names(graph)
    dynamic = None
    if not isinstance(graph, StreamGraph):
        batch = torch.export.Dim("batch", min=1, max=1024)
        length = torch.export.Dim("time", min=model.min_length, max=2**31 - 1)
        dynamic = tuple({0: batch, 1: length} for _ in inputs)
    with warnings.catch_warnings(), _quiet_loggers(say) as say:
        warnings.simplefilter("ignore")
        say("capturing the graph (torch.export)")
        try:
            # Shape guards the tracer cannot prove for every length (e.g. "this chunk padding is
            # non-zero") become runtime asserts instead of a fixed length; the verification below
            # runs the exported file at other lengths.
            program = torch.export.export(graph, inputs, dynamic_shapes=dynamic, strict=False,
                                          prefer_deferred_runtime_asserts_over_guards=True)
        except Exception as e:  # torch.export raises many types; name the model and the reason
            raise ExportError(f"{model.name}: torch.export could not capture the graph: "
                              f"{type(e).__name__}: {str(e).splitlines()[0]}") from e
        say(f"converting to ONNX (opset {opset})")
        onnx_program = torch.onnx.export(program, inputs, input_names=input_names, output_names=output_names,
                                         opset_version=opset, dynamo=True, verbose=False, optimize=False)
        proto = onnx_program.model_proto
        if optimize:  # onnxscript's graph optimizer: ~1.6x faster small-block streaming in onnxruntime
            say("optimizing the ONNX graph (onnxscript)")
            try:
                onnx_program.optimize()
                proto = onnx_program.model_proto
            except Exception:  # it fails on some graphs (a dynamic SplitToSequence); keep the plain one
                pass
    if dynamic is not None:
        for value in list(proto.graph.input) + list(proto.graph.output):
            dims = value.type.tensor_type.shape.dim
            if dims[0].dim_value or dims[-1].dim_value:  # the exporter fixed a dynamic axis
                raise ExportError(f"{model.name}: the exported graph has a fixed batch or length")
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = f"audiomask {meta['kind']} export of {model.name}"
    onnx.save_model(proto, str(target))


def _export_torchscript(model: nn.Module, graph: nn.Module, target: Path, meta: dict[str, str]) -> None:
    inputs = _example_inputs(model, graph)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings: the verification checks other lengths
        traced = torch.jit.trace(graph, inputs, check_trace=False)
    with no_jit_deprecation():
        torch.jit.save(traced, str(target), _extra_files={META_FILE: json.dumps(meta)})


@contextlib.contextmanager
def _quiet_loggers(say: Callable[[str], None]) -> Iterator[Callable[[str], None]]:
    """torch.onnx reports progress through print and logging; keep the CLI's output to ours: the
    ``say`` yielded lets its own line through (the CLI logs the stage lines)."""
    level = logging.root.manager.disable

    def loud(text: str) -> None:
        logging.disable(level)
        try:
            say(text)
        finally:
            logging.disable(logging.WARNING)

    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield loud
    finally:
        logging.disable(level)


# -- verification --------------------------------------------------------------------------------
def verify_export(model: nn.Module, path: str | os.PathLike, fmt: str) -> float:
    """Max |exported − PyTorch| on random input; :class:`ExportError` above :data:`TOLERANCE`."""
    meta = read_metadata(path)
    gen = torch.Generator().manual_seed(1234)
    errors = []
    if meta["kind"] == "offline":
        n_inputs = len(json.loads(meta["inputs"]))
        shortest = int(meta["min_length"])
        for batch, length in ((1, model.sample_rate // 2 + 7), (2, shortest + 1), (1, 3 * model.sample_rate // 2 + 1)):
            signals = [0.1 * torch.randn(batch, max(length, shortest), generator=gen) for _ in range(n_inputs)]
            with torch.no_grad():
                ref = model(*signals)
            ref = ref.unsqueeze(1) if ref.dim() == 2 else ref
            out = run_offline(path, fmt, *(s.numpy() for s in signals))
            errors.append(_max_error(out, ref.numpy(), model.name))
    else:
        from audiomask.export.streamer import open_streamer

        block = int(meta["block_size"])
        n_inputs = len(json.loads(meta["inputs"]))
        signals = [0.1 * torch.randn(block * 12, generator=gen) for _ in range(n_inputs)]
        session, streamer = model.stream(), open_streamer(path)
        for i in range(12):
            blocks = [s[i * block : (i + 1) * block] for s in signals]
            with torch.no_grad():
                ref = session.process(*blocks)
            out = streamer.process(*(b.numpy() for b in blocks))
            errors.append(_max_error(out, (ref if ref.dim() == 2 else ref.unsqueeze(0)).numpy(), model.name))
    return max(errors)


def _max_error(out: np.ndarray, ref: np.ndarray, name: str) -> float:
    if out.shape != ref.shape:
        raise ExportError(f"{name}: exported output has shape {out.shape}, PyTorch {ref.shape}")
    error = float(np.abs(out - ref).max()) if out.size else 0.0
    if not error <= TOLERANCE:
        raise ExportError(f"{name}: exported output differs from PyTorch by {error:.3g} (> {TOLERANCE:g})")
    return error
