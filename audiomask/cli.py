"""The ``audiomask`` command: ``audiomask <command> --help`` documents each command."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import torch

DEFAULT_MODEL = "convtasnet-mini2mix"


class CLIError(Exception):
    """A one-line user error; printed as ``audiomask: error: <message>``, exit code 2."""


def load_model_arg(spec: str, device: str = "cpu") -> torch.nn.Module:
    """``--model`` value → model: a checkpoint path, a bundled model name, or
    ``NAME[:PRESET]`` from the registry (random weights — for tests and benchmarks)."""
    from audiomask.models.checkpoint import CheckpointError, load_model, pretrained_models
    from audiomask.models.registry import build, list_models

    path = Path(spec)
    if path.is_file() or spec in pretrained_models():
        try:
            return load_model(spec, device=device)
        except CheckpointError as e:
            raise CLIError(str(e)) from None
    name, _, preset = spec.partition(":")
    if name in list_models():
        try:
            model = build(name, preset or None)
        except ValueError as e:
            raise CLIError(str(e)) from None
        print(f"audiomask: warning: {spec} has random weights (no checkpoint given)", file=sys.stderr)
        return model.to(device).eval()
    if path.suffix or "/" in spec:
        raise CLIError(f"{spec}: checkpoint not found")
    known = sorted(pretrained_models()) + sorted(list_models())
    raise CLIError(f"{spec}: unknown model; give a checkpoint path or one of: {', '.join(known)}")


def cmd_separate(args: argparse.Namespace) -> int:
    from audiomask.separate import separate_files

    model = load_model_arg(args.model, args.device)
    written, errors = separate_files(model, args.inputs, args.out, args.downmix, progress=not args.quiet)
    for message in errors:
        print(f"audiomask: error: {message}", file=sys.stderr)
    if not args.quiet:
        for p in written:
            print(p)
    return 1 if errors else 0


def cmd_info(args: argparse.Namespace) -> int:
    from audiomask.models.checkpoint import describe

    summary = describe(load_model_arg(args.model))
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"model            {summary['model']}")
    print(f"parameters       {summary['parameters']:,}")
    print(f"sample rate      {summary['sample_rate']} Hz")
    print(f"sources          {summary['n_src']}")
    print(f"causal           {'yes' if summary['causal'] else 'no'}")
    rf = summary["receptive_field_samples"]
    print(f"receptive field  {rf} samples ({1000 * rf / summary['sample_rate']:.1f} ms)")
    print("config")
    for key, value in summary["config"].items():
        print(f"  {key:<20} {value}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from audiomask.models.checkpoint import pretrained_models
    from audiomask.models.registry import list_models

    print("architectures (NAME:PRESET):")
    for name, presets in list_models().items():
        print(f"  {name:<14} presets: {', '.join(presets)}")
    bundled = pretrained_models()
    print("bundled trained models:" if bundled else "bundled trained models: none")
    for name, path in bundled.items():
        print(f"  {name:<14} {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="audiomask", description="Speech separation with encoder → masker → decoder models.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("separate", help="separate audio files into one file per source",
                       description="Separate each input into one file per source, written as "
                                   "OUT/<stem>_s1.wav, OUT/<stem>_s2.wav, … at the input's sample rate "
                                   "(inputs at other rates are resampled to the model's and back).")
    p.add_argument("inputs", nargs="+", metavar="IN", help="audio files (wav, flac, ogg, aiff, …)")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="checkpoint file, bundled model name, or NAME[:PRESET] with random weights "
                        f"(default: {DEFAULT_MODEL})")
    p.add_argument("--out", required=True, help="output directory (created if missing)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1 (default: cpu)")
    p.add_argument("--downmix", action="store_true", help="average multi-channel inputs to mono "
                   "(otherwise they are refused)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or list of written files")
    p.set_defaults(func=cmd_separate)

    p = sub.add_parser("info", help="describe a model: config, parameters, sample rate, causality",
                       description="Print a model's configuration, parameter count, sample rate, "
                                   "number of sources, causality and receptive field.")
    p.add_argument("model", metavar="MODEL", help="checkpoint file, bundled model name or NAME[:PRESET]")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("list", help="list architectures, presets and bundled models",
                       description="List the registered architectures with their presets, and the "
                                   "trained models bundled with the package.")
    p.set_defaults(func=cmd_list)
    return parser


def _version() -> str:
    from audiomask import __version__

    return f"audiomask {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CLIError as e:
        print(f"audiomask: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("audiomask: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
