"""Export to ONNX and TorchScript, offline (any length) or as a streaming step with explicit
state, and run exported streaming graphs block by block.

>>> from audiomask.export import export_model, OnnxStreamer
>>> export_model(audiomask.load("convtasnet-mini2mix-causal"), "ctn.onnx", streaming=True, block_ms=10)
>>> streamer = OnnxStreamer("ctn.onnx")            # onnxruntime; numpy in, numpy out
>>> out = streamer.process(block)                  # [n_src, m]; then streamer.flush()

See :mod:`audiomask.export.core` for what cannot be exported and why.
"""

from audiomask.export.core import (
    FORMATS,
    build_graph,
    check_exportable,
    export_model,
    verify_export,
)
from audiomask.export.files import read_metadata, run_offline
from audiomask.export.graphs import ExportError
from audiomask.export.streamer import OnnxStreamer, Streamer, TorchScriptStreamer, open_streamer

__all__ = [
    "FORMATS", "ExportError", "OnnxStreamer", "Streamer", "TorchScriptStreamer", "build_graph",
    "check_exportable", "export_model", "open_streamer", "read_metadata", "run_offline", "verify_export",
]
