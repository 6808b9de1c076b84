"""Train a small Conv-TasNet on dynamic mixtures of ../shared/data/librispeech-mini (8 kHz).

A plain single-process loop: Adam, gradient clipping, PIT negative SI-SDR, a checkpoint
every ``--save-every`` steps (written atomically, so a crash loses at most that many
steps; ``--resume`` continues from it). Validation SI-SDRi is measured on mixtures of
speakers never seen in training.

    python egs/mini2mix/train_quick.py --steps 3000 --out exp/mini2mix
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from tqdm import tqdm

import audiomask
from audiomask.data import DynamicMixingDataset, find_audio, split_by_speaker
from audiomask.losses import pit_si_sdr_loss
from audiomask.metrics import pit, si_sdr

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "librispeech-mini"


@torch.no_grad()
def validate(model: torch.nn.Module, data: DynamicMixingDataset) -> float:
    """Mean SI-SDRi (dB) over the validation mixtures."""
    model.eval()
    gains = []
    for i in range(len(data)):
        mix, src = data[i]
        est = model(mix[None])
        _, _, scores = pit(est, src[None])
        gains.append((scores - si_sdr(mix[None, None].expand_as(src[None]), src[None])).mean().item())
    model.train()
    return sum(gains) / len(gains)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DATA), help="folder of LibriSpeech-named utterances")
    p.add_argument("--preset", default="small", help="ConvTasNet preset")
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="config overrides")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--segment", type=float, default=2.0, help="seconds")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--valid-speakers", type=int, default=25)
    p.add_argument("--valid-mixtures", type=int, default=100)
    p.add_argument("--save-every", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", required=True)
    p.add_argument("--resume", action="store_true")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    overrides = {k: json.loads(v) if v[:1] in "0123456789-[{tf" else v
                 for k, v in (s.split("=", 1) for s in args.set)}
    model = audiomask.build("convtasnet", args.preset, **overrides)
    train_files, valid_files = split_by_speaker(find_audio(args.data), args.valid_speakers, seed=0)
    train = DynamicMixingDataset(train_files, model.sample_rate, args.segment, model.n_src,
                                 length=args.steps * args.batch, seed=1)
    valid = DynamicMixingDataset(valid_files, model.sample_rate, 4.0, model.n_src,
                                 length=args.valid_mixtures, seed=2)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.steps, eta_min=args.lr / 20)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    step = 0
    if args.resume and (out / "last.safetensors").exists():
        model = audiomask.load(out / "last.safetensors").train()
        opt = torch.optim.Adam(model.parameters(), lr=args.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.steps, eta_min=args.lr / 20)
        state = torch.load(out / "optim.pt", weights_only=True)
        opt.load_state_dict(state["opt"]), sched.load_state_dict(state["sched"])
        step = state["step"]
    model.train()
    log = open(out / "log.csv", "a")
    t0 = time.time()
    bar = tqdm(range(step, args.steps), initial=step, total=args.steps, desc="train")
    for step in bar:
        batch = [train[step * args.batch + j] for j in range(args.batch)]
        mix = torch.stack([b[0] for b in batch])
        src = torch.stack([b[1] for b in batch])
        loss = pit_si_sdr_loss(model(mix), src)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.2f}")
        log.write(f"{step},{loss.item():.4f},{time.time() - t0:.1f}\n")
        if (step + 1) % args.save_every == 0 or step + 1 == args.steps:
            model.save(out / "last.safetensors", {"steps": str(step + 1)})
            tmp = out / "optim.pt.tmp"
            torch.save({"opt": opt.state_dict(), "sched": sched.state_dict(), "step": step + 1}, tmp)
            tmp.replace(out / "optim.pt")
            log.flush()
    gain = validate(model, valid)
    print(f"validation SI-SDRi on {len(valid)} mixtures of {args.valid_speakers} unseen speakers: {gain:.2f} dB")
    (out / "result.json").write_text(json.dumps({"valid_si_sdri": gain, "steps": args.steps,
                                                 "wall_s": time.time() - t0}, indent=2))


if __name__ == "__main__":
    main()
