"""``audiomask train``."""

from __future__ import annotations

import argparse
import logging

from audiomask.cli.common import CLIError

_log = logging.getLogger(__name__)


def cmd_train(args: argparse.Namespace) -> int:
    from audiomask.models.checkpoint import CheckpointError
    from audiomask.training import TrainingError, load_config, train

    try:
        cfg = load_config(args.config, args.overrides)
    except ValueError as e:
        raise CLIError(str(e)) from None
    try:
        summary = train(cfg, progress=not args.quiet)
    except (TrainingError, CheckpointError) as e:  # the run's device, files or numbers
        _log.error("%s", e)
        return 1
    if summary["interrupted"]:
        return 128 + summary["interrupted"]  # the shell's convention: 130 for SIGINT, 143 for SIGTERM
    if summary["already_done"]:
        how = (f"stopped early at step {summary['steps']} (run.early_stop={cfg.run.early_stop} validations "
               "without improvement): raise run.early_stop or set it to 0" if summary["early_stopped"] else
               f"trained to step {summary['steps']} (optim.steps): raise optim.steps")
        print(f"{cfg.run.out_dir}: already {how} to train further")
        return 0
    if summary.get("best_si_sdri", float("-inf")) > float("-inf"):
        print(f"best validation SI-SDRi {summary['best_si_sdri']:.2f} dB; "
              f"{summary['steps_per_s']:.2f} steps/s, {summary['samples_per_s']:.2f} samples/s; "
              f"model: {cfg.run.out_dir}/best.safetensors")
    return 0
