"""Models (all :class:`EncoderMaskerDecoder`), the registry and checkpoint I/O."""

from audiomask.models.base import EncoderMaskerDecoder
from audiomask.models.checkpoint import CheckpointError, load_model, save_model
from audiomask.models.convtasnet import ConvTasNet, ConvTasNetConfig
from audiomask.models.registry import build, list_models, register_model

__all__ = [
    "EncoderMaskerDecoder", "ConvTasNet", "ConvTasNetConfig", "build", "list_models",
    "register_model", "load_model", "save_model", "CheckpointError",
]
