"""The ``audiomask`` command: ``audiomask <command> --help`` documents each command.

``common`` holds what the commands share, one module per command group holds its ``cmd_*``
functions, and ``parser`` assembles them (``prepare``, ``export`` and ``serve`` included)."""

from __future__ import annotations

import sys
from typing import Sequence

from audiomask.audio import AudioError
from audiomask.cli.common import (
    DEFAULT_AEC_MODEL,
    DEFAULT_CAUSAL_MODEL,
    DEFAULT_MODEL,
    CLIError,
    error_line,
    load_model_arg,
    load_model_arg_with_provenance,
)
from audiomask.cli.parser import build_parser

__all__ = ["DEFAULT_AEC_MODEL", "DEFAULT_CAUSAL_MODEL", "DEFAULT_MODEL", "CLIError", "build_parser",
           "load_model_arg", "load_model_arg_with_provenance", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from audiomask.runtime import tune_allocator

    tune_allocator()  # long inputs: keep freed activations in the heap (AUDIOMASK_TUNE_MALLOC=0: off)
    try:
        return args.func(args)
    except CLIError as e:
        print(f"audiomask: error: {e}", file=sys.stderr)
        return 2
    except AudioError as e:
        print(error_line(e), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("audiomask: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
