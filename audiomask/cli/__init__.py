"""The ``audiomask`` command: ``audiomask <command> --help`` documents each command.

``common`` holds what the commands share, one module per command group holds its ``cmd_*``
functions, and ``parser`` assembles them (``prepare``, ``export`` and ``serve`` included)."""

from __future__ import annotations

import logging
import sys
from typing import Sequence

from audiomask.audio import AudioError
from audiomask.cli.common import (
    DEFAULT_AEC_MODEL,
    DEFAULT_CAUSAL_MODEL,
    DEFAULT_MODEL,
    CLIError,
    cli_message,
    load_model_arg,
    load_model_arg_with_provenance,
    log_to_stderr,
)
from audiomask.cli.parser import build_parser

_log = logging.getLogger(__name__)

__all__ = ["DEFAULT_AEC_MODEL", "DEFAULT_CAUSAL_MODEL", "DEFAULT_MODEL", "CLIError", "build_parser",
           "load_model_arg", "load_model_arg_with_provenance", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    log_to_stderr()  # warnings, errors and notices of the package: `audiomask: …` lines on stderr
    from audiomask.runtime import tune_allocator

    tune_allocator()  # long inputs: keep freed activations in the heap (AUDIOMASK_TUNE_MALLOC=0: off)
    try:
        return args.func(args)
    except CLIError as e:
        _log.error("%s", e)
        return 2
    except AudioError as e:
        _log.error("%s", cli_message(e))
        return 1
    except KeyboardInterrupt:
        _log.info("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
