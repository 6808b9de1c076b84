"""Single-process and torchrun/DDP training with bit-exact resume.

Everything a step depends on is a function of the step number or is checkpointed:
example ``j`` of step ``s`` on rank ``r`` is position ``(s·world + r)·batch + j`` of the
data stream (:class:`StepBatches`: epochs of a fixed dataset in seeded per-epoch orders;
datasets draw each index from its own seeded generator), the learning rate is a
function of the step (and the checkpointed plateau factor), and the model, optimizer,
grad-scaler and RNG states are saved together every ``checkpoint_every`` steps. A run
killed at any point and restarted with the same command therefore continues exactly as
if it had never stopped. SIGINT (Ctrl-C) or SIGTERM ends the current step (or validation
item), saves a checkpoint and exits; a second one quits at once.

Files in ``run.out_dir``: ``config.yaml`` (resolved), ``last.safetensors`` (model),
``state.pt`` (weights, optimizer, scaler, RNG and step together, so the pair can never
disagree; loaded with ``weights_only=True``, checksummed, the previous one kept as
``state.prev.pt``: see :mod:`~audiomask.training.checkpoints`), ``best.safetensors``
(best validation SI-SDRi), ``train.csv`` and ``valid.csv`` logs (and TensorBoard events if
``tensorboard`` is installed).
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
import yaml
from torch.utils.data import DataLoader, Sampler

from audiomask import kernels
from audiomask.data.manifest import MixtureDataset
from audiomask.fileio import atomic_write_text, remove_stale_temps
from audiomask.models.registry import build
from audiomask.tasks import task_of
from audiomask.training.checkpoints import STATE, TrainingError, read_state, write_state
from audiomask.training.config import TrainConfig

TRAIN_FIELDS = ["step", "loss", "lr", "grad_norm", "samples_per_s", "elapsed_s"]
VALID_FIELDS = ["step", "si_sdri", "best_si_sdri", "lr_scale"]
_log = logging.getLogger(__name__)


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


def resolve_device(spec: str, local_rank: int = 0, world: int = 1) -> torch.device:
    """``run.device`` → the device of this process: ``auto`` (the local rank's GPU when CUDA
    is available, else the CPU), ``cpu``, ``cuda`` (the local rank's GPU) or ``cuda:N`` (one
    process only). Raises :class:`TrainingError` for anything else or a GPU this machine lacks."""
    name = str(spec).strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    kind, sep, index_text = name.partition(":")
    if kind != "cuda" or (sep and not index_text.isdigit()):
        raise TrainingError(f"run.device: expected auto, cpu, cuda or cuda:N, got {spec!r}")
    if not torch.cuda.is_available():
        raise TrainingError(f"run.device={spec}: CUDA is not available (this torch build: {torch.__version__}); "
                            "use run.device=cpu or auto")
    if sep and world > 1:
        raise TrainingError(f"run.device={spec} would put all {world} torchrun processes on one GPU; "
                            "use run.device=cuda (each process takes its local rank's GPU)")
    index = int(index_text) if sep else local_rank
    count = torch.cuda.device_count()
    if index >= count:
        raise TrainingError(f"run.device={spec}: GPU {index} requested, this machine has {count}")
    return torch.device("cuda", index)


class _StopSignals:
    """While entered (in the main thread), SIGINT and SIGTERM only set :attr:`signum`: the
    loop ends the current step, saves a checkpoint and stops (``announce``: saying so on
    stderr at once). A second signal raises :class:`KeyboardInterrupt` at once."""

    def __init__(self, announce: bool = True) -> None:
        self.signum, self.announce = 0, announce
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_StopSignals":
        self.signum = 0
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum:
            raise KeyboardInterrupt
        self.signum = signum
        if self.announce:  # os.write: the handler may run in the middle of a buffered stderr write
            os.write(2, f"\naudiomask: {signal.Signals(signum).name}: saving a checkpoint after this step "
                        "(once more to quit without saving)\n".encode())

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


class Trainer:
    """Train ``cfg.model`` on ``cfg.data``; resumes from ``cfg.run.out_dir`` if it holds a run."""

    def __init__(self, cfg: TrainConfig, progress: bool = True) -> None:
        self.cfg, self.progress = cfg, progress
        self.dist = DistInfo.from_env()
        if cfg.run.threads > 0:
            torch.set_num_threads(cfg.run.threads)
        self.device = resolve_device(cfg.run.device, self.dist.local_rank, self.dist.world)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if self.dist.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self.out = Path(cfg.run.out_dir)
        if self.out.exists() and not self.out.is_dir():
            raise TrainingError(f"run.out_dir={self.out}: not a folder")
        self._signals = _StopSignals(announce=self.dist.is_main)
        torch.manual_seed(cfg.run.seed)
        self.model = build(cfg.model.name, cfg.model.preset, **cfg.model.overrides).to(self.device)
        self.task = task_of(self.model)  # separation or echo cancellation: data, objectives, score
        self.loss_fn = self.task.loss(cfg.optim.loss, cfg.optim.loss_args)
        try:
            self.train_set, self.valid_set = self.task.datasets(
                cfg.data, self.model.sample_rate, self.model.n_src, seed=cfg.run.seed,
                total=cfg.optim.steps * cfg.optim.batch_size * self.dist.world)
        except ValueError as e:
            raise TrainingError(str(e)) from None
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.optim.lr,
                                          weight_decay=cfg.optim.weight_decay)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.run.amp == "fp16")
        self.step, self.best, self.stale, self.lr_scale = 0, -math.inf, 0, 1.0
        self.valid_pending = False  # a validation due at this step has not finished yet
        self.nonfinite_run = 0  # non-finite steps skipped in a row (optim.nonfinite=skip)
        self.saved_step: int | None = None  # step of the newest checkpoint on disk
        self.elapsed_before = 0.0  # training seconds spent by earlier (interrupted) processes
        self._t0 = time.time()
        state = (read_state(self.out, lambda text: self._say(text, logging.WARNING), tidy=self.dist.is_main)
                 if self.out.is_dir() else None)
        if state is not None:
            self._resume(state)
        elif cfg.model.init_from:
            self._initialise_from(cfg.model.init_from)
        self.net = self.model
        if self.dist.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            # Some models own parameters that do not reach the loss (Conv-TasNet's last residual
            # conv, kept for checkpoint compatibility with the authors' code).
            self.net = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids,
                                                                 find_unused_parameters=True)
        # what the training step calls; it shares the parameters of self.net
        self.train_net = torch.compile(self.net) if cfg.run.compile else self.net

    # -- setup ---------------------------------------------------------------------------
    def _say(self, message: str, level: int = logging.INFO) -> None:
        """Log ``message`` from rank 0 only (``audiomask train`` shows it on stderr, above the progress bar)."""
        if self.dist.is_main:
            _log.log(level, "%s", message)

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
    def _resume(self, state: dict[str, Any]) -> None:
        self._check_same_model(state)
        if state["step"] > self.cfg.optim.steps:
            raise TrainingError(f"{self.out} holds a run at step {state['step']}, beyond optim.steps="
                                f"{self.cfg.optim.steps}: raise optim.steps to continue it, or set another "
                                "run.out_dir for a new run")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"])
        kernels.POLICY.restore(state.get("kernel_choices", {}))  # the paths the run took: bit-exact
        self.step, self.best = state["step"], state["best"]
        self.stale, self.lr_scale = state["stale"], state["lr_scale"]
        self.elapsed_before = float(state.get("elapsed", 0.0))
        self.valid_pending = bool(state.get("valid_pending", False))
        self.nonfinite_run = int(state.get("nonfinite_run", 0))
        self.saved_step = self.step
        if self.dist.is_main:
            self._truncate_log("train.csv", self.step)
            self._truncate_log("valid.csv", self.step - 1 if self.valid_pending else self.step)
            if self.step < self.cfg.optim.steps and not self.stopped_early:
                self._say(f"resuming {self.out} from step {self.step}")

    def _model_config(self) -> dict[str, Any]:
        return {"name": self.model.name, **dataclasses.asdict(self.model.config)}

    def _check_same_model(self, state: dict[str, Any]) -> None:
        """A run resumes only into the model it was trained as (not another preset or size)."""
        from audiomask.state_dicts import state_dict_problems

        theirs, mine = state.get("model_config"), self._model_config()
        if theirs is not None:
            differences = [f"{k}={theirs.get(k)!r} in the checkpoint, {mine.get(k)!r} in the config"
                           for k in dict.fromkeys([*theirs, *mine]) if theirs.get(k) != mine.get(k)]
        else:  # written before configs were stored: compare the tensors' names and shapes
            differences = state_dict_problems({k: v.shape for k, v in self.model.state_dict().items()},
                                              state["model"])
        if differences:
            more = f" (and {len(differences) - 3} more)" if len(differences) > 3 else ""
            raise TrainingError(
                f"{self.out / STATE}: the run was trained with another model config: "
                f"{'; '.join(differences[:3])}{more}. Give the config it was trained with, set another "
                f"run.out_dir for a new run, or start one from its weights with "
                f"model.init_from={self.out / 'last.safetensors'}")

    def _initialise_from(self, spec: str) -> None:
        from audiomask.models.checkpoint import check_state_dict, load_model

        source = load_model(spec)
        state = source.state_dict()
        if source.sample_rate != self.model.sample_rate and hasattr(self.model, "resampled_state_dict"):
            # e.g. an 8 kHz Conv-TasNet as the start of a 16 kHz one (bases resampled, TCN kept)
            state = self.model.resampled_state_dict(state, source.config)
        masker = getattr(self.model, "masker", None)
        if source.name == self.model.name and getattr(masker, "causal", False) and not source.masker.causal:
            # a causal TCN started from a non-causal one: depthwise taps moved into the past
            state = _with_masker_state(state, masker.causal_state_dict)
        if (source.name == self.model.name and hasattr(masker, "grown_state_dict")
                and len(source.masker.blocks) < len(masker.blocks)):
            # A deeper TCN started from a shallower one: the same function at step 0, more depth.
            state = _with_masker_state(state, masker.grown_state_dict)
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
        """Write ``last.safetensors`` and ``state.pt`` (rank 0); refuses non-finite weights."""
        if any(not torch.isfinite(p).all() for p in self.model.parameters()):
            raise TrainingError(f"step {self.step}: the weights are not finite; not saved (the last "
                                f"checkpoint, {self._saved_text()}, is intact)")
        if not self.dist.is_main:
            self.saved_step = self.step
            return
        self.model.save(self.out / "last.safetensors", {"steps": str(self.step)})
        write_state({
            "step": self.step, "best": self.best, "stale": self.stale, "lr_scale": self.lr_scale,
            "elapsed": self.elapsed, "valid_pending": self.valid_pending, "nonfinite_run": self.nonfinite_run,
            "model_config": self._model_config(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
            "rng": torch.get_rng_state(), "kernel_choices": kernels.POLICY.export(),
        }, self.out)
        self.saved_step = self.step

    def _saved_text(self) -> str:
        return "none written yet" if self.saved_step is None else f"step {self.saved_step}"

    @property
    def elapsed(self) -> float:
        """Training wall time in seconds, over all processes of this run."""
        return self.elapsed_before + time.time() - self._t0

    # -- validation ------------------------------------------------------------------------
    def _validation_items(self) -> Iterator[int]:
        """Indices of the validation set, with a progress bar; ends early on SIGINT/SIGTERM."""
        from tqdm import tqdm

        for i in tqdm(range(len(self.valid_set)), desc="validate", unit="mix", leave=False,
                      disable=not (self.progress and self.dist.is_main), dynamic_ncols=True):
            if self._signals.signum:
                return
            yield i

    @torch.no_grad()
    def validate(self) -> float | None:
        """Mean validation score (dB over doing nothing; :meth:`Task.validation_gain
        <audiomask.tasks.Task.validation_gain>`: SI-SDRi for separation, near-end SI-SDRi or
        ERLE for echo cancellation); None when a stop signal ended it early."""
        self.model.eval()
        gains = [self.task.validation_gain(self.model, tuple(t.to(self.device)[None] if torch.is_tensor(t) else t
                                                             for t in self.valid_set[i]))
                 for i in self._validation_items()]
        self.model.train()
        return sum(gains) / max(1, len(gains)) if len(gains) == len(self.valid_set) else None

    # -- the loop ----------------------------------------------------------------------------
    def train(self, stop_after: int | None = None) -> dict[str, Any]:
        """Run to ``optim.steps`` (or early stop, or a stop signal: see the module doc).
        ``stop_after`` ends this call after that step (as if the process were killed right
        after it); used by tests. The summary's ``interrupted`` is the signal that stopped
        the run (0: none); ``already_done`` says there was nothing left to train (the run had
        reached ``optim.steps`` or stopped early)."""
        cfg, main = self.cfg, self.dist.is_main
        if main:
            try:
                self.out.mkdir(parents=True, exist_ok=True)
                remove_stale_temps(self.out)  # left by a process killed while writing
                if self.saved_step is None:  # logs of a run killed before its first checkpoint start afresh
                    self._truncate_log("train.csv", 0)
                    self._truncate_log("valid.csv", 0)
                atomic_write_text(self.out / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
            except OSError as e:
                raise TrainingError(f"run.out_dir={self.out}: cannot write there ({e.strerror or e})") from None
        already_done = (self.step >= cfg.optim.steps or self.stopped_early) and not self.valid_pending
        loader = DataLoader(self.train_set, num_workers=cfg.data.num_workers, worker_init_fn=_ignore_stop_signals,
                            batch_sampler=StepBatches(self.step, cfg.optim.steps, cfg.optim.batch_size,
                                                      self.dist.rank, self.dist.world, len(self.train_set),
                                                      shuffle=isinstance(self.train_set, MixtureDataset),
                                                      seed=cfg.run.seed))
        logs = (_CSVLog(self.out / "train.csv", TRAIN_FIELDS), _CSVLog(self.out / "valid.csv", VALID_FIELDS)) \
            if main and not already_done else (None, None)
        writer = _tensorboard(self.out) if main and not already_done else None
        bar = _progress(self.step, cfg.optim.steps, enabled=main and self.progress and not already_done)
        self._t0 = t0 = time.time()
        start_step, stopped_early, signum = self.step, False, 0
        self.model.train()
        try:
            with self._signals:
                if self.valid_pending:  # a validation that a stop signal cut short
                    stopped_early, signum = self._after_step(logs[1], writer, force_checkpoint=False)
                if not (already_done or stopped_early or signum):
                    for batch in loader:
                        self._train_step(batch, logs[0], writer, bar, t0, start_step)
                        stopped_early, signum = self._after_step(logs[1], writer)
                        if stopped_early or signum or (stop_after is not None and self.step >= stop_after):
                            break
        finally:
            bar.close()
            for log in logs:
                if log:
                    log.file.close()
            if writer:
                writer.close()
        if signum:
            self._say(f"{signal.Signals(signum).name} at step {self.step}: checkpoint saved in {self.out}; "
                      "run the same command to resume")
        wall = time.time() - t0
        steps_done = self.step - start_step
        return {"steps": self.step, "best_si_sdri": self.best, "wall_s": wall, "total_wall_s": self.elapsed,
                "steps_per_s": steps_done / max(wall, 1e-9),
                "samples_per_s": steps_done * cfg.optim.batch_size * self.dist.world / max(wall, 1e-9),
                "early_stopped": self.stopped_early, "interrupted": signum, "already_done": already_done}

    def _train_step(self, batch: list[torch.Tensor], train_log: "_CSVLog | None", writer: Any, bar: Any,
                    t0: float, start_step: int) -> None:
        """One optimizer step (or, with a non-finite loss or gradient, none: see ``optim.nonfinite``)."""
        cfg = self.cfg
        amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.run.amp)
        *inputs, target = (t.to(self.device) for t in batch)
        # a skipped step must not leave its forward pass in running statistics (BatchNorm)
        buffers = [b.detach().clone() for b in self.model.buffers()] if cfg.optim.nonfinite == "skip" else []
        lr = self.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast(self.device.type, dtype=amp or torch.float32, enabled=amp is not None):
            est = self.task.training_output(self.train_net, inputs)
        loss = self.loss_fn(est.float(), target)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.clip_grad_norm)
        loss_value, norm_value = loss.item(), grad_norm.item()
        # fp16: an overflowing gradient is the grad scaler's business (it skips the step itself)
        bad = not math.isfinite(loss_value) or (cfg.run.amp != "fp16" and not math.isfinite(norm_value))
        if self._agree(float(bad))[0]:
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.update()
            self._nonfinite_step(loss_value, norm_value)
            with torch.no_grad():
                for b, saved in zip(self.model.buffers(), buffers):
                    b.copy_(saved)
        else:
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.nonfinite_run = 0
        self.step += 1
        if self.dist.is_main:
            rate = (self.step - start_step) * target.shape[0] * self.dist.world / max(1e-9, time.time() - t0)
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.2f}", lr=f"{lr:.1e}", samples_s=f"{rate:.1f}")
            if self.step % cfg.run.log_every == 0 or self.step == cfg.optim.steps:
                train_log.write([self.step, f"{loss_value:.4f}", f"{lr:.3e}", f"{norm_value:.3f}",
                                 f"{rate:.2f}", f"{self.elapsed:.1f}"])
                if writer:
                    writer.add_scalar("train/loss", loss_value, self.step)

    def _nonfinite_step(self, loss: float, grad_norm: float) -> None:
        """A step whose loss or gradient norm (on some rank) is not finite: skip it or stop."""
        o, step = self.cfg.optim, self.step + 1
        what = f"loss {loss:g}, gradient norm {grad_norm:g}"
        self.nonfinite_run += 1
        if o.nonfinite == "skip" and self.nonfinite_run <= o.max_nonfinite_skips:
            self._say(f"step {step}: non-finite {what}; step skipped ({self.nonfinite_run} in a row, "
                      f"at most optim.max_nonfinite_skips={o.max_nonfinite_skips})", logging.WARNING)
            return
        why = (f"{self.nonfinite_run} non-finite steps in a row (optim.max_nonfinite_skips={o.max_nonfinite_skips})"
               if o.nonfinite == "skip" else f"non-finite {what}")
        raise TrainingError(f"step {step}: {why}; training stopped without saving it (the last checkpoint, "
                            f"{self._saved_text()}, is intact). Lower optim.lr or optim.clip_grad_norm, check "
                            "the data, or set optim.nonfinite=skip")

    def _after_step(self, valid_log: "_CSVLog | None", writer: Any,
                    force_checkpoint: bool | None = None) -> tuple[bool, int]:
        """Validation and checkpoint due at this step; returns (early stop, stop signal).

        A stop signal (on any rank) makes this step a checkpoint; a validation it cut short is
        marked pending in that checkpoint and runs first on resume."""
        cfg, stopped_early = self.cfg, False
        if self.valid_pending or self.step % cfg.run.valid_every == 0 or self.step == cfg.optim.steps:
            self.valid_pending = True
            stopped_early = self._validation_round(valid_log, writer)
        signum = int(self._agree(float(self._signals.signum))[0])
        due = self.step % cfg.run.checkpoint_every == 0 or self.step == cfg.optim.steps
        if (due if force_checkpoint is None else force_checkpoint) or stopped_early or signum:
            self.save_checkpoint()
            if self.dist.world > 1:
                dist.barrier()
        return stopped_early, signum

    def _agree(self, *flags: float) -> list[float]:
        """The largest value of each flag over all ranks (the values themselves in one process)."""
        if self.dist.world == 1:
            return list(flags)
        t = torch.tensor(flags, dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t.tolist()

    def _validation_round(self, valid_log: "_CSVLog | None", writer: Any) -> bool:
        """Validate on rank 0, update best/plateau/early-stop state on every rank (unless a stop
        signal cut the validation short: it stays pending)."""
        flags = torch.zeros(3, dtype=torch.float64)  # score, improved, finished
        if self.dist.is_main:
            score = self.validate()
            if score is not None:
                flags[:] = torch.tensor([score, float(score > self.best), 1.0], dtype=torch.float64)
        if self.dist.world > 1:
            flags = flags.to(self.device)
            dist.broadcast(flags, 0)
            flags = flags.cpu()
        score, improved, finished = flags[0].item(), bool(flags[1].item()), bool(flags[2].item())
        if not finished:
            return False
        self.valid_pending = False
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
        return self.stopped_early

    @property
    def stopped_early(self) -> bool:
        """``run.early_stop`` validations in a row without improvement (with the current config:
        a larger ``run.early_stop`` lets a run that stopped early go on)."""
        return bool(self.cfg.run.early_stop) and self.stale >= self.cfg.run.early_stop


def _with_masker_state(state: dict[str, torch.Tensor], mapped) -> dict[str, torch.Tensor]:
    """``state`` with its ``masker.*`` tensors replaced by ``mapped`` of them (given and returned
    without the ``masker.`` prefix), e.g. ``TCNMasker.grown_state_dict``."""
    inner = {k[len("masker."):]: v for k, v in state.items() if k.startswith("masker.")}
    return {**state, **{f"masker.{k}": v for k, v in mapped(inner).items()}}


def _ignore_stop_signals(worker_id: int) -> None:
    """Data-loader workers leave Ctrl-C (sent to the whole process group) and SIGTERM to the
    main process, which stops after the step; the workers end with it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


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
