"""Training configuration: a YAML file → typed dataclasses, with ``section.key=value`` overrides."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from audiomask.tasks import TASKS


@dataclass
class ModelSection:
    """Which model to train: registry ``name``, ``preset`` and config field ``overrides``.

    ``init_from``: a checkpoint (path or bundled model name) whose weights start a new run
    (fine-tuning, or continuing a finished run with a new schedule); its config must match,
    except that a Conv-TasNet may start from one with fewer TCN blocks (e.g. ``overrides:
    {n_repeats: 3}`` from an R=2 model): the added blocks start as the identity
    (:meth:`~audiomask.maskers.tcn.TCNMasker.grown_state_dict`).
    Ignored when the run resumes from its own checkpoint.
    """

    name: str = "convtasnet"
    preset: str | None = "small"
    overrides: dict[str, Any] = field(default_factory=dict)
    init_from: str | None = None


@dataclass
class DataSection:
    """Training data: dynamic mixing of a speech folder (``speech_dir``) or fixed manifests.

    ``valid_speakers`` speakers of ``speech_dir`` are held out for validation (never seen in
    training); validation uses ``valid_mixtures`` fixed mixtures of ``valid_segment`` seconds.
    Corruptions: real noise from ``noise_dir`` at an SNR drawn in ``snr_db``; with probability
    ``reverb_prob``, reverberation from the measured RIRs in ``rir_dir`` and/or simulated rooms
    (``simulate_rooms``, needs ``audiomask[simulate]``). ``speed_perturb`` ``s`` plays each
    training source at a random speed in ``[1 - s, 1 + s]`` (validation is never perturbed).
    ``synthetic_noise``: share of noisy examples whose noise is synthesised from the training
    speech (babble of other training speakers, coloured noise; without ``noise_dir`` all noise
    is synthetic); ``mix_noise_prob``: share of mixtures with noise; ``noise_split`` ``f``:
    the last ``f`` of every noise recording is kept for validation and never trained on;
    ``reverberant_target``: reverberant sources as references (the WHAMR! convention) instead
    of the dry direct path. Relative paths are resolved against the config file's folder.

    Echo cancellation (a model whose ``task`` is ``"aec"``, e.g. ``d3net-aec``): scenes are
    simulated from ``speech_dir`` (:class:`~audiomask.data.aec.EchoSimulationDataset`; held-out
    speakers for validation as above): echo paths from ``rir_dir`` and/or ``simulate_rooms``,
    signal-to-echo ratio drawn in ``ser_db``, bulk delay in ``echo_delay_ms``, a loudspeaker
    non-linearity with probability ``nonlinear_prob``, an echo-path change with probability
    ``path_change_prob``, noise from ``noise_dir`` in a ``noise_prob`` share of the scenes at an
    SNR in ``snr_db``, and ``scenarios`` = weights of double talk, far-end single talk and
    near-end single talk; ``nonlinearities`` = loudspeaker models drawn from (``clip_tanh``,
    ``soft_clip``, ``harmonic``), ``near_reverb_prob`` = share of reverberant near-end talkers,
    and ``synthetic_noise`` as above. Or ``aec_dir``: the AEC Challenge synthetic folder (train/test split
    from its ``meta.csv``). ``reverb_prob`` and ``sir_db`` are not used.
    """

    speech_dir: str | None = None
    train_manifest: str | None = None
    valid_manifest: str | None = None
    segment: float = 2.0
    valid_segment: float = 4.0
    valid_speakers: int = 25
    valid_mixtures: int = 100
    sir_db: float = 5.0
    noise_dir: str | None = None
    snr_db: list[float] = field(default_factory=lambda: [0.0, 20.0])
    rir_dir: str | None = None
    simulate_rooms: bool = False
    reverb_prob: float = 0.0
    speed_perturb: float = 0.0
    synthetic_noise: float = 0.0
    mix_noise_prob: float = 1.0
    noise_split: float = 0.0
    reverberant_target: bool = False
    num_workers: int = 0
    # echo cancellation (models with task "aec"; ignored otherwise)
    aec_dir: str | None = None
    ser_db: list[float] = field(default_factory=lambda: [-10.0, 10.0])
    echo_delay_ms: list[float] = field(default_factory=lambda: [0.0, 200.0])
    nonlinear_prob: float = 0.5
    path_change_prob: float = 0.2
    noise_prob: float = 0.8
    scenarios: list[float] = field(default_factory=lambda: [0.5, 0.25, 0.25])
    nonlinearities: list[str] = field(default_factory=lambda: ["clip_tanh"])
    near_reverb_prob: float = 0.0


@dataclass
class OptimSection:
    """Adam with gradient clipping and a learning-rate schedule.

    ``schedule``: ``"cosine"`` (to ``min_lr`` at ``steps``), ``"plateau"`` (halve after
    ``plateau_patience`` validations without improvement) or ``"constant"``; all after a linear
    warm-up of ``warmup_steps``. ``loss``: ``"auto"`` (PIT SI-SDR for separation, ``aec_loss``
    for echo cancellation), ``"pit_si_sdr"``, ``"aec"`` or ``"aec_near_end"``
    (:func:`audiomask.losses.aec_near_end_loss`). ``loss_args``: keyword arguments of that
    objective, e.g. ``optim.loss_args={suppression_weight: 0.5}`` for ``aec_near_end``.

    ``nonfinite``: what a step whose loss or gradient norm is NaN/Inf does: ``"stop"`` (end
    the run with an error; the last checkpoint stays as it was) or ``"skip"`` (leave the
    weights unchanged and go on, at most ``max_nonfinite_skips`` steps in a row).
    """

    lr: float = 1e-3
    min_lr: float = 5e-5
    weight_decay: float = 0.0
    batch_size: int = 4
    steps: int = 10_000
    warmup_steps: int = 0
    schedule: str = "cosine"
    plateau_patience: int = 3
    clip_grad_norm: float = 5.0
    loss: str = "auto"
    loss_args: dict[str, Any] = field(default_factory=dict)
    nonfinite: str = "stop"
    max_nonfinite_skips: int = 10


@dataclass
class RunSection:
    """Where and how: output folder, seeds, checkpoint/validation cadence, AMP, threads.

    ``amp``: ``"none"``, ``"bf16"`` or ``"fp16"`` (autocast; on CUDA). ``early_stop``: stop
    after that many validations without SI-SDRi improvement (0: never). ``device``:
    ``auto`` (the local rank's GPU if CUDA is available, else the CPU), ``cpu``, ``cuda``
    (under torchrun: the local rank's GPU) or ``cuda:N`` (one process). ``compile``: run
    the training forward and backward through ``torch.compile`` (TorchInductor; on a CPU it
    needs a C++ compiler, and the first step compiles for minutes). It fuses the element-wise
    work of layers that have no hand-written path — e.g. the causal (cLN) TCN, whose PReLU,
    cumulative norm and depthwise-conv gradients otherwise run as dozens of separate passes;
    validation and checkpoints use the model itself.
    """

    out_dir: str = "exp/run"
    seed: int = 0
    checkpoint_every: int = 200
    valid_every: int = 1000
    early_stop: int = 0
    amp: str = "none"
    device: str = "auto"
    threads: int = 0
    log_every: int = 10
    compile: bool = False


@dataclass
class TrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    run: RunSection = field(default_factory=RunSection)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SECTIONS = {"model": ModelSection, "data": DataSection, "optim": OptimSection, "run": RunSection}


def parse_value(text: str) -> Any:
    """``key=value`` right-hand sides are YAML scalars/lists: ``3e-4``, ``true``, ``[0, 10]``."""
    return yaml.safe_load(text) if text != "" else ""


def _coerce(value: Any, annotation: str, key: str) -> Any:
    """Give ``value`` its field's type. YAML reads ``1e-3`` (no dot) as a string, so numbers
    written that way are converted here; anything unconvertible is an error naming the key."""
    kind = str(annotation).replace(" | None", "").strip()
    if value is None:
        return None
    try:
        if kind == "float":
            return float(value)
        if kind == "int":
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise ValueError
            return int(float(value))
        if kind == "bool":
            if isinstance(value, str):
                return {"true": True, "false": False, "yes": True, "no": False}[value.lower()]
            return bool(value)
        if kind == "list[float]":
            return [float(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
    except (ValueError, TypeError, KeyError):
        raise ValueError(f"{key}: expected {kind}, got {value!r}") from None
    return value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Read ``path`` (YAML with sections model/data/optim/run) and apply ``section.key=value``
    overrides (``model.overrides.n_src=3`` reaches into the model's config). Unknown sections or
    keys raise ``ValueError`` naming them. Relative data paths are made absolute w.r.t. the file."""
    raw: dict[str, Any] = {}
    base = Path.cwd()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"{path}: config file not found")
        raw = yaml.safe_load(path.read_text()) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
        base = path.resolve().parent
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise ValueError(f"override {item!r} is not section.key=value")
        parts = key.split(".")
        node = raw
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {p} is not a section")
        node[parts[-1]] = parse_value(value)
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ValueError(f"unknown config section(s) {unknown}; valid: {sorted(SECTIONS)}")
    sections = {}
    for name, cls in SECTIONS.items():
        values = raw.get(name) or {}
        fields = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(values) - fields)
        if bad:
            raise ValueError(f"unknown key(s) in section {name!r}: {bad}; valid: {sorted(fields)}")
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        sections[name] = cls(**{k: _coerce(v, types[k], f"{name}.{k}") for k, v in values.items()})
    cfg = TrainConfig(**sections)
    for key in ("speech_dir", "train_manifest", "valid_manifest", "noise_dir", "rir_dir", "aec_dir"):
        value = getattr(cfg.data, key)
        if value is not None and not Path(value).is_absolute():
            setattr(cfg.data, key, str((base / value).resolve()))
    _check_ranges(cfg)
    if cfg.optim.schedule not in ("cosine", "plateau", "constant"):
        raise ValueError(f"optim.schedule must be cosine, plateau or constant, got {cfg.optim.schedule!r}")
    if cfg.run.amp not in ("none", "bf16", "fp16"):
        raise ValueError(f"run.amp must be none, bf16 or fp16, got {cfg.run.amp!r}")
    if cfg.optim.nonfinite not in ("stop", "skip"):
        raise ValueError(f"optim.nonfinite must be stop or skip, got {cfg.optim.nonfinite!r}")
    losses = ["auto"] + [name for task in TASKS.values() for name in task.losses]
    if cfg.optim.loss not in losses:
        raise ValueError(f"optim.loss must be {', '.join(losses[:-1])} or {losses[-1]}, got {cfg.optim.loss!r}")
    for key in ("synthetic_noise", "mix_noise_prob", "near_reverb_prob"):
        if not 0.0 <= getattr(cfg.data, key) <= 1.0:
            raise ValueError(f"data.{key} must be in [0, 1], got {getattr(cfg.data, key)!r}")
    if not 0.0 <= cfg.data.noise_split < 1.0:
        raise ValueError(f"data.noise_split must be in [0, 1), got {cfg.data.noise_split!r}")
    return cfg


# (section, key, lowest allowed value, whether the lowest value itself is allowed)
_LOWER_BOUNDS = [
    ("optim", "steps", 1, True), ("optim", "batch_size", 1, True), ("optim", "lr", 0, True),
    ("optim", "min_lr", 0, True), ("optim", "weight_decay", 0, True), ("optim", "warmup_steps", 0, True),
    ("optim", "plateau_patience", 1, True), ("optim", "clip_grad_norm", 0, False),
    ("optim", "max_nonfinite_skips", 1, True),
    ("run", "checkpoint_every", 1, True), ("run", "valid_every", 1, True), ("run", "log_every", 1, True),
    ("run", "early_stop", 0, True), ("run", "threads", 0, True),
]


def _check_ranges(cfg: TrainConfig) -> None:
    """Numbers out of range (NaN included) are errors naming the key."""
    for section, key, low, inclusive in _LOWER_BOUNDS:
        value = getattr(getattr(cfg, section), key)
        if not (value >= low if inclusive else value > low):
            bound = f">= {low}" if inclusive else f"> {low}"
            raise ValueError(f"{section}.{key} must be {bound}, got {value!r}")
