"""Copy a finished mini2mix run into the package as a bundled pretrained model.

Takes ``RUN/best.safetensors`` (best validation SI-SDRi; or ``--checkpoint``), re-measures
SI-SDRi on the run's validation mixtures (speakers never seen in training), and saves it to
``audiomask/pretrained/NAME.safetensors`` with the facts of the run as metadata.

    python egs/mini2mix/package.py exp/mini2mix convtasnet-mini2mix
    python egs/mini2mix/package.py exp/aec-small d3net-aec-small \
        --data "simulated echo scenes from shared/data (25 speakers held out)" \
        --fact erle_db=25.00 --fact dt_si_sdr_db=-0.55      # facts measured by bench/aec.py
    python egs/mini2mix/package.py egs/robust16k/exp/robust16k-stage5 convtasnet-robust16k \
        --quality bench/results/quality-robust16k-stage5.json --condition noisy-reverb-16k

With ``--quality``, the validation score is not re-measured on the run's own set but taken
from a ``bench/quality.py`` result of this checkpoint (fixed sets, the same on every machine),
for ``--condition``; the other conditions' means are kept as facts too.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
from pathlib import Path

import torch

import audiomask
from audiomask.models.checkpoint import PRETRAINED_DIR, read_metadata
from audiomask.training import Trainer, load_config


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="training output folder (holds config.yaml, best.safetensors)")
    p.add_argument("name", help="bundled model name")
    p.add_argument("--checkpoint", type=Path,
                   help="the weights to bundle (default RUN/best.safetensors), e.g. an average of fine-tunes "
                        "made with tools/average_checkpoints.py; RUN's config and validation set still apply")
    p.add_argument("--data", help="what the model was trained on (default: the mini2mix mixtures)")
    p.add_argument("--fact", action="append", default=[], metavar="KEY=VALUE",
                   help="another fact for the metadata (repeatable), e.g. a benchmark result")
    p.add_argument("--quality", type=Path, help="bench/quality.py --json result of RUN/best.safetensors")
    p.add_argument("--condition", default="noisy-reverb-16k", help="its condition that is the validation score")
    args = p.parse_args()
    cfg = load_config(args.run / "config.yaml")
    best = args.checkpoint or args.run / "best.safetensors"
    meta = read_metadata(best)
    model = audiomask.load(best)
    if args.quality:
        quality = quality_facts(args.quality, best, args.condition)
        gain, n_valid = float(quality.pop("valid_si_sdri")), quality.pop("valid_mixtures")
    else:
        trainer = Trainer(cfg, progress=False)  # rebuilds the run's validation set
        trainer.model.load_state_dict(model.state_dict())
        gain, n_valid, quality = trainer.validate(), str(cfg.data.valid_mixtures), {}
    rows = list(csv.DictReader((args.run / "train.csv").open()))
    wall = float(rows[-1]["elapsed_s"]) if rows else float("nan")
    facts = {
        "name": args.name,
        "data": args.data or "dynamic 2-speaker mixtures of shared/data/librispeech-mini at 8 kHz "
                f"({cfg.data.valid_speakers} speakers held out for validation)",
        "steps": meta.get("steps", "?"),
        "batch": f"{cfg.optim.batch_size} x {cfg.data.segment:g} s",
        "valid_si_sdri": f"{gain:.2f}",
        "valid_mixtures": n_valid,
        **quality,
        "train_wall_s": f"{wall:.0f}",
        "hardware": f"{platform.machine()} CPU, {cfg.run.threads or torch.get_num_threads()} thread(s)",
        "torch": torch.__version__,
        **dict(fact.split("=", 1) for fact in args.fact),
    }
    out = PRETRAINED_DIR / f"{args.name}.safetensors"
    model.save(out, facts)
    print(f"{out}: validation score {gain:.2f} dB on {n_valid} mixtures "
          f"of unseen speakers, {meta.get('steps')} steps")


def quality_facts(path: Path, checkpoint: Path, condition: str) -> dict[str, str]:
    """The validation facts of ``checkpoint`` from a ``bench/quality.py --json`` file: the
    SI-SDRi mean of ``condition`` (``valid_si_sdri``, ``valid_set``, ``valid_mixtures``) and
    of every other condition (``quality_<condition>_si_sdri``)."""
    results = json.loads(path.read_text())
    found = [spec for spec in results["models"] if Path(spec).resolve() == checkpoint.resolve()]
    if not found:
        raise SystemExit(f"{path}: no result for {checkpoint} (it has {', '.join(results['models'])})")
    conds = results["models"][found[0]]
    if condition not in conds:
        raise SystemExit(f"{path}: no {condition!r} result (it has {', '.join(conds)})")
    sets = results["sets"]
    facts = {f"quality_{c.replace('-', '_')}_si_sdri": f"{r['summary']['si_sdri']['mean']:.2f}" for c, r in conds.items()}
    return {**facts, "valid_si_sdri": f"{conds[condition]['summary']['si_sdri']['mean']:.2f}",
            "valid_set": f"bench/quality.py {condition}, {sets['mixtures']} x {sets['seconds']:g} s",
            "valid_mixtures": str(conds[condition]["summary"]["si_sdri"]["n"])}


if __name__ == "__main__":
    main()
