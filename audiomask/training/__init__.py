"""Training: YAML config → typed dataclasses, single process or torchrun/DDP, bit-exact resume."""

from audiomask.training.config import TrainConfig, load_config
from audiomask.training.trainer import Trainer, train

__all__ = ["TrainConfig", "load_config", "Trainer", "train"]
