"""``audiomask export``: the subcommand's parser and body."""

from __future__ import annotations

import argparse
import json
import logging
import time

_log = logging.getLogger(__name__)

EXPORT_EPILOG = """\
examples:
  audiomask export convtasnet-mini2mix --out ctn.onnx                        # offline, any length
  audiomask export convtasnet-mini2mix-causal --streaming --block-ms 10 --out ctn-stream.onnx
  audiomask export d3net-aec-small --streaming --out aec-stream.onnx         # inputs block, far_block
  audiomask export tiger:small --format torchscript --out tiger.pt

offline graphs: input "mix" float32 [batch, T] (echo cancellers: "mic", "far"), output "est"
  [batch, n_src, T]; any batch and any T >= the min_length in the file's metadata.
streaming graphs: inputs "block" [1, N] (echo cancellers also "far_block") and state_0 …,
  outputs "out" [1, n_src, N] and state_out_0 …; states start as zeros (shapes and dtypes in
  the metadata); drop the first discard_samples output samples. audiomask.export.OnnxStreamer
  runs one with onnxruntime.

not exportable:
  --streaming of a non-causal model (Conv-TasNet with gLN, TIGER, MossFormer, MossFormer2):
    every output sample depends on the whole input, so no fixed-size state can carry it;
    export these offline (or run them chunked).
  --streaming of causal MossFormer/MossFormer2: no stateful step yet; export offline.
  --streaming needs N a multiple of the hop (Conv-TasNet: L/2 samples, centred framing with
    L = 2·hop; echo canceller: a zero-padded STFT with hop = n_fft/2).
  echo cancellers export the near-end estimate only (not the echo and noise estimates).

TorchScript is deprecated by PyTorch (torch.jit.load/save warn); ONNX is the format to deploy.
"""


def add_export_parser(sub: argparse._SubParsersAction) -> None:
    """``audiomask export MODEL --format onnx|torchscript --out FILE [--streaming --block-ms N]``."""
    p = sub.add_parser(
        "export", help="export a model to ONNX or TorchScript (offline, or streaming with explicit state)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Export MODEL as one file: offline (a graph of the whole signal, any length) or, with "
                    "--streaming,\none block of --block-ms with the streaming state as explicit inputs and "
                    "outputs, so any\nONNX runtime can stream it. Sample rate, sources, block size and the "
                    "state's names, shapes\nand dtypes are stored in the file's metadata. The file is checked "
                    "against the PyTorch\nmodel before it is kept (max difference 1e-4; --no-verify skips this).",
        epilog=EXPORT_EPILOG)
    p.add_argument("model", metavar="MODEL", help="checkpoint file, bundled model name or NAME[:PRESET]")
    p.add_argument("--format", choices=["onnx", "torchscript"], default="onnx", help="default: onnx")
    p.add_argument("--out", required=True, help="output file (e.g. model.onnx, model.pt)")
    p.add_argument("--streaming", action="store_true", help="export one streaming step with explicit state")
    p.add_argument("--block-ms", type=float, default=10.0, help="block length of --streaming in ms (default: 10)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default: 18)")
    p.add_argument("--no-optimize", action="store_true", help="skip onnxscript's graph optimizer (faster export, "
                   "slower small-block streaming)")
    p.add_argument("--no-verify", action="store_true", help="do not compare the file with the PyTorch model")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from audiomask.cli.common import PLAIN, CLIError, load_model_arg
    from audiomask.export import ExportError, export_model

    if args.format == "onnx":
        try:
            import onnx  # noqa: F401  (the export extra)
            import onnxruntime  # noqa: F401
        except ImportError as e:
            raise CLIError(f"ONNX export needs onnx and onnxruntime: pip install 'audiomask[export]' ({e})") from None
    from audiomask.streaming.blocks import check_block_ms

    try:
        check_block_ms(args.block_ms)  # the bounds of `stream`
    except ValueError as e:
        raise CLIError(str(e)) from None
    model = load_model_arg(args.model, "cpu")
    start = time.perf_counter()

    def stage(text: str) -> None:  # progress on stderr: a large model takes minutes
        if not args.quiet:
            _log.info("[%5.1f s] %s", time.perf_counter() - start, text, extra=PLAIN)

    try:
        meta = export_model(model, args.out, args.format, streaming=args.streaming, block_ms=args.block_ms,
                            verify=not args.no_verify, opset=args.opset, optimize=not args.no_optimize,
                            stage=stage)
    except ExportError as e:
        raise CLIError(str(e)) from None
    if not args.quiet:
        what = (f"streaming, {meta['block_size']} samples per block ({args.block_ms:g} ms), "
                f"{len(json.loads(meta['state_names']))} state tensors" if meta["kind"] == "streaming"
                else f"offline, any length >= {meta['min_length']} samples")
        print(args.out)
        print(f"{model.name} at {meta['sample_rate']} Hz, {meta['n_src']} output(s): {what}; "
              f"{time.perf_counter() - start:.1f} s")
        if "max_abs_error" in meta:
            print(f"verified: max |{args.format} - PyTorch| = {float(meta['max_abs_error']):.2e}")
    return 0
