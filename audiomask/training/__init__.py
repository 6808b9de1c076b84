"""Training: YAML config → typed dataclasses, single process or torchrun/DDP, bit-exact resume."""

from audiomask.training.checkpoints import TrainingError
from audiomask.training.config import TrainConfig, load_config
from audiomask.training.trainer import Trainer, resolve_device, train

__all__ = ["TrainConfig", "TrainingError", "load_config", "Trainer", "resolve_device", "train"]
