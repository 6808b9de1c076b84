"""What every ``audiomask`` command shares: the default models, the one-line ``CLIError``,
``--model`` resolution, ``--device``/``--threads``, progress, and the stderr lines of the
package's log (:func:`log_to_stderr`)."""

from __future__ import annotations

import argparse
import difflib
import logging
import sys
from pathlib import Path

import torch

from audiomask.separation import DEFAULT_MODEL
DEFAULT_CAUSAL_MODEL = "convtasnet-robust16k-causal"
DEFAULT_AEC_MODEL = "d3net-aec-small"  # the bundled echo canceller
PLAIN = {"plain": True}  # ``extra=PLAIN``: a log line shown without the ``audiomask: `` prefix

_log = logging.getLogger(__name__)


class CLIError(Exception):
    """A one-line user error; printed as ``audiomask: error: <message>``, exit code 2."""


class _Lines(logging.Formatter):
    """The command's stderr lines: ``audiomask: error: …`` (ERROR and above), ``audiomask: warning: …``,
    ``audiomask: …`` (INFO, DEBUG); a record logged with ``extra=PLAIN`` as it is."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        if getattr(record, "plain", False):
            return record.message
        kind = ("error: " if record.levelno >= logging.ERROR else
                "warning: " if record.levelno >= logging.WARNING else "")
        return f"audiomask: {kind}{record.message}"


class _StderrLines(logging.Handler):
    """Writes each record to the ``sys.stderr`` of the moment (tests swap it after this handler
    exists), through ``tqdm.write`` so a line lands above a progress bar instead of through it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def log_to_stderr() -> None:
    """Show the package's log (logger ``audiomask``, INFO and above) on stderr as the command's
    lines; what an entry point (``main``) calls, never the library. A second call adds nothing."""
    logger = logging.getLogger("audiomask")
    if not any(isinstance(h, _StderrLines) for h in logger.handlers):
        handler = _StderrLines()
        handler.setFormatter(_Lines())
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def load_model_arg(spec: str, device: str = "cpu") -> torch.nn.Module:
    """``--model`` value → model: a checkpoint path (audiomask's, or a released file of another
    toolkit as published), a bundled model name, ``hf:OWNER/REPO`` of a known release, or
    ``NAME[:PRESET]`` from the registry (random weights — for tests and benchmarks)."""
    return load_model_arg_with_provenance(spec, device)[0]


def load_model_arg_with_provenance(spec: str, device: str = "cpu") -> tuple[torch.nn.Module, dict[str, str]]:
    """:func:`load_model_arg` and where the weights came from (empty for random weights)."""
    from audiomask.loading import HUB_PREFIX, load_with_provenance
    from audiomask.models.checkpoint import CheckpointError, pretrained_models
    from audiomask.models.registry import build, list_models

    check_device(device)
    path = Path(spec)
    if path.exists() or spec in pretrained_models() or spec.startswith(HUB_PREFIX):
        try:
            return load_with_provenance(spec, device=device)
        except CheckpointError as e:
            raise CLIError(str(e)) from None
    name, _, preset = spec.partition(":")
    if name in list_models():
        try:
            model = build(name, preset or None)
        except ValueError as e:
            raise CLIError(str(e)) from None
        _log.warning("%s has random weights (no checkpoint given)", spec)
        return model.to(device).eval(), {}
    if path.suffix or "/" in spec:
        raise CLIError(f"{spec}: checkpoint not found")
    known = sorted(pretrained_models()) + sorted(list_models())
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    raise CLIError(f"{spec}: unknown model; {hint}give a checkpoint path or one of: {', '.join(known)}")


def refuse_echo_canceller(model: torch.nn.Module, spec: str) -> None:
    """Separation commands take one mixture; an echo canceller needs the far-end signal too."""
    from audiomask.tasks import SEPARATION, task_of

    if task_of(model).inputs != SEPARATION.inputs:
        raise CLIError(f"{spec} is an echo canceller (it needs the far-end signal too): "
                       "use `audiomask aec --mic MIC --far FAR --out OUT`")


def check_device(device: str) -> None:
    """Refuse a device this machine does not have, with the reason, before loading anything."""
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise CLIError(f"--device {device}: {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CLIError(f"--device {device}: CUDA is not available (this torch build: {torch.__version__})")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise CLIError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s)")


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when this machine has it, else ``cpu``; other names are checked
    (:func:`check_device`) and kept."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    check_device(device)
    return device


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def cli_message(problem: object) -> str:
    """A failed input's problem with the library's option names in the CLI's spelling (logged as an
    error: ``audiomask: error: …``)."""
    from audiomask.audio import DOWNMIX_HINT

    return str(problem).replace(DOWNMIX_HINT, "use --downmix")


def show_progress(args: argparse.Namespace) -> bool:
    """Progress bars go to stderr, only when it is a terminal and ``--quiet`` is not given."""
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


def add_compute_arguments(p: argparse.ArgumentParser, device_note: str = "", threads_note: str = "") -> None:
    """``--device`` (default auto) and ``--threads`` for a command that runs a model."""
    note = f"; {device_note}" if device_note else ""
    p.add_argument("--device", default="auto",
                   help=f"torch device: auto (cuda when available, else cpu), cpu, cuda, cuda:1, … (default: auto{note})")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="CPU threads (default: OMP_NUM_THREADS when set, else every core that is idle"
                        f"{'; ' + threads_note if threads_note else ''})")
