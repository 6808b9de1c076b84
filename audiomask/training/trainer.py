"""Single-process and torchrun/DDP training with bit-exact resume.

Everything a step depends on is a function of the step number or is checkpointed:
example ``j`` of step ``s`` on rank ``r`` is position ``(s·world + r)·batch + j`` of the
data stream (:class:`StepBatches`: epochs of a fixed dataset in seeded per-epoch orders;
datasets draw each index from its own seeded generator), the learning rate is a
function of the step (and the checkpointed plateau factor), and the model, optimizer,
grad-scaler and RNG states are saved together every ``checkpoint_every`` steps. A run
killed at any point and restarted with the same command therefore continues exactly as
if it had never stopped.

Files in ``run.out_dir``: ``config.yaml`` (resolved), ``last.safetensors`` (model),
``state.pt`` (weights, optimizer, scaler, RNG and step together, so the pair can never
disagree; loaded with ``weights_only=True``), ``best.safetensors``
(best validation SI-SDRi), ``train.csv`` and ``valid.csv`` logs (and TensorBoard events if
``tensorboard`` is installed).
"""

from __future__ import annotations

import csv
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
import yaml
from torch.utils.data import DataLoader, Dataset, Sampler

from audiomask.data.manifest import MixtureDataset
from audiomask.fileio import atomic_target, atomic_write_text
from audiomask.losses import aec_loss, aec_near_end_loss, pit_si_sdr_loss
from audiomask.metrics import erle, pit, si_sdr
from audiomask.models.registry import build
from audiomask.training.config import TrainConfig

TRAIN_FIELDS = ["step", "loss", "lr", "grad_norm", "samples_per_s", "elapsed_s"]
VALID_FIELDS = ["step", "si_sdri", "best_si_sdri", "lr_scale"]


@dataclass
class DistInfo:
    """Rank and world size (from torchrun's environment; 1 process otherwise)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> "DistInfo":
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                   int(os.environ.get("LOCAL_RANK", 0)))

    @property
    def is_main(self) -> bool:
        return self.rank == 0


class StepBatches(Sampler[list[int]]):
    """Batches of dataset indices for steps ``start … steps-1`` of one rank (see module doc).

    Position ``p = (step·world + rank)·batch + j`` runs through the dataset epoch after epoch:
    epoch ``p // size``, item ``p % size``. With ``shuffle`` (fixed mixtures from a manifest)
    each epoch visits the items in its own order, a permutation drawn from ``(seed, epoch)``,
    so the order is a function of the step and a resumed run sees the same batches.
    Generated datasets (dynamic mixing, simulated echo scenes) are as long as the run and
    are read in order (every index is a fresh draw).
    """

    def __init__(self, start: int, steps: int, batch_size: int, rank: int, world: int,
                 size: int | None = None, shuffle: bool = False, seed: int = 0) -> None:
        self.start, self.steps, self.batch_size, self.rank, self.world = start, steps, batch_size, rank, world
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self._order: tuple[int, torch.Tensor] | None = None  # (epoch, permutation)

    def __len__(self) -> int:
        return max(0, self.steps - self.start)

    def index(self, position: int) -> int:
        if not self.size:
            return position
        epoch, item = divmod(position, self.size)
        if not self.shuffle:
            return item
        if self._order is None or self._order[0] != epoch:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._order = (epoch, torch.randperm(self.size, generator=gen))
        return int(self._order[1][item])

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.steps):
            first = (step * self.world + self.rank) * self.batch_size
            yield [self.index(p) for p in range(first, first + self.batch_size)]


def atomic_torch_save(obj: Any, path: Path) -> None:
    with atomic_target(path) as tmp:
        torch.save(obj, tmp)


class Trainer:
    """Train ``cfg.model`` on ``cfg.data``; resumes from ``cfg.run.out_dir`` if it holds a run."""

    def __init__(self, cfg: TrainConfig, progress: bool = True) -> None:
        self.cfg, self.progress = cfg, progress
        self.dist = DistInfo.from_env()
        if self.dist.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        if cfg.run.threads > 0:
            torch.set_num_threads(cfg.run.threads)
        self.device = self._device(cfg.run.device)
        self.out = Path(cfg.run.out_dir)
        torch.manual_seed(cfg.run.seed)
        self.model = build(cfg.model.name, cfg.model.preset, **cfg.model.overrides).to(self.device)
        # "separation" (one mixture in, PIT SI-SDR) or "aec" (microphone + far-end in, aec_loss)
        self.task = getattr(self.model, "task", "separation")
        self.loss_fn = _loss_function(cfg.optim.loss, self.task)
        self.train_set, self.valid_set = self._datasets()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.optim.lr,
                                          weight_decay=cfg.optim.weight_decay)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.run.amp == "fp16")
        self.step, self.best, self.stale, self.lr_scale = 0, -math.inf, 0, 1.0
        self.elapsed_before = 0.0  # training seconds spent by earlier (interrupted) processes
        self._t0 = time.time()
        if (self.out / "state.pt").is_file():
            self._resume()
        elif cfg.model.init_from:
            self._initialise_from(cfg.model.init_from)
        self.net = self.model
        if self.dist.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            # Some models own parameters that do not reach the loss (Conv-TasNet's last residual
            # conv, kept for checkpoint compatibility with the authors' code).
            self.net = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids,
                                                                 find_unused_parameters=True)

    # -- setup ---------------------------------------------------------------------------
    def _device(self, name: str) -> torch.device:
        if name == "auto":
            name = f"cuda:{self.dist.local_rank}" if torch.cuda.is_available() else "cpu"
        device = torch.device(name)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        return device

    def _datasets(self) -> tuple[Dataset, Dataset]:
        d, m = self.cfg.data, self.model
        if self.task == "aec":
            return self._aec_datasets()
        if d.speech_dir:
            from audiomask.data import DynamicMixingDataset, find_audio, split_by_speaker

            train_files, valid_files = split_by_speaker(find_audio(d.speech_dir), d.valid_speakers, seed=0)
            total = self.cfg.optim.steps * self.cfg.optim.batch_size * self.dist.world
            extra: dict[str, Any] = {}
            if d.noise_dir:
                extra.update(noise_files=find_audio(d.noise_dir))
            if d.noise_dir or d.synthetic_noise > 0:
                extra.update(snr_db=tuple(d.snr_db), synthetic_noise=d.synthetic_noise,
                             noise_prob=d.mix_noise_prob)
            if d.reverb_prob > 0 and (d.rir_dir or d.simulate_rooms):
                extra.update(rir_files=find_audio(d.rir_dir) if d.rir_dir else None,
                             simulate_rooms=d.simulate_rooms, reverb_prob=d.reverb_prob,
                             reverberant_target=d.reverberant_target)
            train_span, valid_span = _noise_spans(d.noise_split)
            train = DynamicMixingDataset(train_files, m.sample_rate, d.segment, m.n_src, length=total,
                                         sir_db=d.sir_db, seed=self.cfg.run.seed,
                                         speed_perturb=d.speed_perturb, noise_span=train_span, **extra)
            valid = DynamicMixingDataset(valid_files, m.sample_rate, d.valid_segment, m.n_src,
                                         length=d.valid_mixtures, sir_db=d.sir_db,
                                         seed=self.cfg.run.seed + 10_000, noise_span=valid_span, **extra)
            return train, valid
        if d.train_manifest and d.valid_manifest:
            from audiomask.data import MixtureDataset

            train = MixtureDataset(d.train_manifest, sample_rate=m.sample_rate, segment=d.segment,
                                   seed=self.cfg.run.seed)
            return train, MixtureDataset(d.valid_manifest, sample_rate=m.sample_rate)
        raise ValueError("data: set speech_dir (dynamic mixing) or both train_manifest and valid_manifest")

    def _aec_datasets(self) -> tuple[Dataset, Dataset]:
        """Echo-cancellation data: simulated scenes from ``speech_dir`` (speaker-disjoint
        train/validation), or the AEC Challenge synthetic folder ``aec_dir`` (its train/test
        split)."""
        d, rate = self.cfg.data, self.model.sample_rate
        total = self.cfg.optim.steps * self.cfg.optim.batch_size * self.dist.world
        if d.aec_dir:
            from audiomask.data import AECChallengeDataset

            train = AECChallengeDataset(d.aec_dir, rate, split="train", segment=d.segment,
                                        seed=self.cfg.run.seed, length=total)
            valid = AECChallengeDataset(d.aec_dir, rate, split="test", segment=d.valid_segment,
                                        seed=self.cfg.run.seed + 10_000)
            if len(valid) > d.valid_mixtures:
                valid = AECChallengeDataset(d.aec_dir, rate, split="test", segment=d.valid_segment,
                                            seed=self.cfg.run.seed + 10_000,
                                            fileids=valid.fileids[: d.valid_mixtures])
            return train, valid
        if not d.speech_dir:
            raise ValueError("data: an AEC model trains on speech_dir (simulated echo scenes) or aec_dir "
                             "(AEC Challenge synthetic layout)")
        from audiomask.data import EchoSimulationDataset, find_audio, split_by_speaker

        train_files, valid_files = split_by_speaker(find_audio(d.speech_dir), d.valid_speakers, seed=0)
        extra: dict[str, Any] = dict(
            rir_files=find_audio(d.rir_dir) if d.rir_dir else None, simulate_rooms=d.simulate_rooms,
            noise_files=find_audio(d.noise_dir) if d.noise_dir else None, noise_prob=d.noise_prob,
            snr_db=tuple(d.snr_db), ser_db=tuple(d.ser_db), delay_ms=tuple(d.echo_delay_ms),
            nonlinear_prob=d.nonlinear_prob, path_change_prob=d.path_change_prob,
            scenario_probs=tuple(d.scenarios), nonlinearities=tuple(d.nonlinearities),
            near_reverb_prob=d.near_reverb_prob, synthetic_noise=d.synthetic_noise)
        train = EchoSimulationDataset(train_files, rate, d.segment, length=total, seed=self.cfg.run.seed, **extra)
        valid = EchoSimulationDataset(valid_files, rate, d.valid_segment, length=d.valid_mixtures,
                                      seed=self.cfg.run.seed + 10_000, **extra)
        return train, valid

    # -- schedule ------------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        o = self.cfg.optim
        warm = min(1.0, (step + 1) / o.warmup_steps) if o.warmup_steps else 1.0
        if o.schedule == "cosine":
            t = min(1.0, step / max(1, o.steps))
            lr = o.min_lr + 0.5 * (o.lr - o.min_lr) * (1 + math.cos(math.pi * t))
        else:
            lr = o.lr
        return lr * warm * self.lr_scale

    # -- checkpoints -----------------------------------------------------------------------
    def _resume(self) -> None:
        state = torch.load(self.out / "state.pt", map_location="cpu", weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"])
        self.step, self.best = state["step"], state["best"]
        self.stale, self.lr_scale = state["stale"], state["lr_scale"]
        self.elapsed_before = float(state.get("elapsed", 0.0))
        if self.dist.is_main:
            self._truncate_log("train.csv", self.step)
            self._truncate_log("valid.csv", self.step)

    def _initialise_from(self, spec: str) -> None:
        from audiomask.models.checkpoint import check_state_dict, load_model

        source = load_model(spec)
        state = source.state_dict()
        if source.sample_rate != self.model.sample_rate and hasattr(self.model, "resampled_state_dict"):
            # e.g. an 8 kHz Conv-TasNet as the start of a 16 kHz one (bases resampled, TCN kept)
            state = self.model.resampled_state_dict(state, source.config)
        masker = getattr(self.model, "masker", None)
        if (source.name == self.model.name and hasattr(masker, "grown_state_dict")
                and len(source.masker.blocks) < len(masker.blocks)):
            # A deeper TCN started from a shallower one: the same function at step 0, more depth.
            inner = {k[len("masker."):]: v for k, v in state.items() if k.startswith("masker.")}
            state = {**state, **{f"masker.{k}": v for k, v in masker.grown_state_dict(inner).items()}}
        check_state_dict(self.model, state, source=spec)
        self.model.load_state_dict(state)

    def _truncate_log(self, name: str, step: int) -> None:
        """Drop log rows written after the checkpoint we resume from (they will be redone)."""
        path = self.out / name
        if not path.is_file():
            return
        rows = list(csv.reader(path.open()))
        kept = [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) <= step]
        if rows and kept:
            atomic_write_text(path, "".join(",".join(r) + "\n" for r in [rows[0]] + kept))
        else:
            path.unlink()  # nothing worth keeping; the log starts afresh with its header

    def save_checkpoint(self) -> None:
        if not self.dist.is_main:
            return
        self.model.save(self.out / "last.safetensors", {"steps": str(self.step)})
        atomic_torch_save({
            "step": self.step, "best": self.best, "stale": self.stale, "lr_scale": self.lr_scale,
            "elapsed": self.elapsed,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
            "rng": torch.get_rng_state(),
        }, self.out / "state.pt")

    @property
    def elapsed(self) -> float:
        """Training wall time in seconds, over all processes of this run."""
        return self.elapsed_before + time.time() - self._t0

    # -- validation ------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> float:
        """Mean SI-SDRi (dB, PIT) over the validation set (AEC: see :meth:`_validate_aec`)."""
        if self.task == "aec":
            return self._validate_aec()
        self.model.eval()
        gains = []
        for i in range(len(self.valid_set)):
            mix, src = (t.to(self.device)[None] for t in self.valid_set[i][:2])
            _, _, scores = pit(self.model(mix), src)
            base = si_sdr(mix[:, None].expand_as(src), src)
            gains.append((scores - base).mean().item())
        self.model.train()
        return sum(gains) / max(1, len(gains))

    @torch.no_grad()
    def _validate_aec(self, cap_db: float = 30.0) -> float:
        """Mean improvement (dB) over doing nothing: on clips with near-end speech (double
        talk, near-end single talk) the near-end SI-SDRi, on far-end single talk the ERLE —
        every SI-SDR and ERLE capped at ``cap_db`` (a clean near-end-only clip has an unbounded
        input SI-SDR; an all-zero output an unbounded ERLE). 0 dB for a model that passes the
        microphone signal through."""
        self.model.eval()
        gains = []
        for i in range(len(self.valid_set)):
            mic, far, targets = (t.to(self.device)[None] for t in self.valid_set[i][:3])
            est = self.model(mic, far)
            near = targets[:, 0]
            if near.abs().amax() > 0:
                gain = si_sdr(est, near).clamp(max=cap_db) - si_sdr(mic, near).clamp(max=cap_db)
            else:
                gain = erle(mic, est).clamp(max=cap_db)
            gains.append(gain.mean().item())
        self.model.train()
        return sum(gains) / max(1, len(gains))

    # -- the loop ----------------------------------------------------------------------------
    def train(self, stop_after: int | None = None) -> dict[str, Any]:
        """Run to ``optim.steps`` (or early stop). ``stop_after`` ends this call after that
        step (as if the process were killed right after a checkpoint); used by tests."""
        cfg, main = self.cfg, self.dist.is_main
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.out / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        loader = DataLoader(self.train_set, num_workers=cfg.data.num_workers,
                            batch_sampler=StepBatches(self.step, cfg.optim.steps, cfg.optim.batch_size,
                                                      self.dist.rank, self.dist.world, len(self.train_set),
                                                      shuffle=isinstance(self.train_set, MixtureDataset),
                                                      seed=cfg.run.seed))
        train_log = _CSVLog(self.out / "train.csv", TRAIN_FIELDS) if main else None
        valid_log = _CSVLog(self.out / "valid.csv", VALID_FIELDS) if main else None
        writer = _tensorboard(self.out) if main else None
        bar = _progress(self.step, cfg.optim.steps, enabled=main and self.progress)
        amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.run.amp)
        self._t0 = t0 = time.time()
        samples, start_step, stopped_early = 0, self.step, False
        self.model.train()
        for batch in loader:
            *inputs, target = (t.to(self.device) for t in batch)
            lr = self.lr_at(self.step)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            with torch.autocast(self.device.type, dtype=amp or torch.float32, enabled=amp is not None):
                est = self.net(*inputs, return_all=True) if self.task == "aec" else self.net(*inputs)
            loss = self.loss_fn(est.float(), target)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.clip_grad_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.step += 1
            samples += target.shape[0] * self.dist.world
            if main:
                rate = samples / max(1e-9, time.time() - t0)
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.2f}", lr=f"{lr:.1e}", samples_s=f"{rate:.1f}")
                if self.step % cfg.run.log_every == 0 or self.step == cfg.optim.steps:
                    train_log.write([self.step, f"{loss.item():.4f}", f"{lr:.3e}", f"{grad_norm.item():.3f}",
                                     f"{rate:.2f}", f"{self.elapsed:.1f}"])
                    if writer:
                        writer.add_scalar("train/loss", loss.item(), self.step)
            if self.step % cfg.run.valid_every == 0 or self.step == cfg.optim.steps:
                stopped_early = self._validation_round(valid_log, writer)
            if self.step % cfg.run.checkpoint_every == 0 or self.step == cfg.optim.steps or stopped_early:
                self.save_checkpoint()
                if self.dist.world > 1:
                    dist.barrier()
            if stopped_early or (stop_after is not None and self.step >= stop_after):
                break
        bar.close()
        for log in (train_log, valid_log):
            if log:
                log.file.close()
        if writer:
            writer.close()
        wall = time.time() - t0
        steps_done = self.step - start_step
        return {"steps": self.step, "best_si_sdri": self.best, "wall_s": wall, "total_wall_s": self.elapsed,
                "steps_per_s": steps_done / max(wall, 1e-9),
                "samples_per_s": steps_done * cfg.optim.batch_size * self.dist.world / max(wall, 1e-9),
                "early_stopped": stopped_early}

    def _validation_round(self, valid_log: "_CSVLog | None", writer: Any) -> bool:
        """Validate on rank 0, update best/plateau/early-stop state on every rank."""
        flags = torch.zeros(2, dtype=torch.float64)
        if self.dist.is_main:
            score = self.validate()
            improved = score > self.best
            flags[:] = torch.tensor([score, float(improved)], dtype=torch.float64)
        if self.dist.world > 1:
            flags = flags.to(self.device)
            dist.broadcast(flags, 0)
            flags = flags.cpu()
        score, improved = flags[0].item(), bool(flags[1].item())
        if improved:
            self.best, self.stale = score, 0
            if self.dist.is_main:
                self.model.save(self.out / "best.safetensors",
                                {"steps": str(self.step), "valid_si_sdri": f"{score:.3f}"})
        else:
            self.stale += 1
            if self.cfg.optim.schedule == "plateau" and self.stale % self.cfg.optim.plateau_patience == 0:
                self.lr_scale *= 0.5
        if self.dist.is_main:
            valid_log.write([self.step, f"{score:.3f}", f"{self.best:.3f}", f"{self.lr_scale:g}"])
            if writer:
                writer.add_scalar("valid/si_sdri", score, self.step)
        return bool(self.cfg.run.early_stop) and self.stale >= self.cfg.run.early_stop


class _CSVLog:
    def __init__(self, path: Path, fields: list[str]) -> None:
        new = not path.is_file()
        self.file = path.open("a", newline="")
        if new:
            self.file.write(",".join(fields) + "\n")
            self.file.flush()

    def write(self, row: list[Any]) -> None:
        self.file.write(",".join(map(str, row)) + "\n")
        self.file.flush()


LOSSES = {"pit_si_sdr": (pit_si_sdr_loss, "separation"), "aec": (aec_loss, "aec"),
          "aec_near_end": (aec_near_end_loss, "aec")}


def _loss_function(name: str, task: str):
    """``optim.loss`` → the objective; ``"auto"``: PIT SI-SDR for separation, ``aec_loss`` for AEC."""
    if name == "auto":
        return aec_loss if task == "aec" else pit_si_sdr_loss
    if name not in LOSSES:
        raise ValueError(f"optim.loss: unknown loss {name!r}; choose auto or one of {sorted(LOSSES)}")
    fn, loss_task = LOSSES[name]
    if loss_task != task:
        raise ValueError(f"optim.loss: {name} is a {loss_task} objective, but the model's task is {task}")
    return fn


def _noise_spans(split: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """Training and validation shares of every noise recording for ``data.noise_split``."""
    if split == 0:
        return (0.0, 1.0), (0.0, 1.0)
    if not 0.0 < split < 1.0:
        raise ValueError(f"data.noise_split must be in [0, 1), got {split}")
    return (0.0, 1.0 - split), (1.0 - split, 1.0)


def _progress(start: int, total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(initial=start, total=total, desc="train", unit="step", disable=not enabled, dynamic_ncols=True)


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard not installed: CSV logs only
        return None
    return SummaryWriter(str(out / "tensorboard"))


def train(cfg: TrainConfig, progress: bool = True) -> dict[str, Any]:
    """Build a :class:`Trainer` and run it; tears down the process group if it made one."""
    trainer = Trainer(cfg, progress)
    try:
        return trainer.train()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
