"""Models (all :class:`EncoderMaskerDecoder`), the registry and checkpoint I/O."""

from audiomask.models.aec import D3NetAEC, D3NetAECConfig
from audiomask.models.base import EncoderMaskerDecoder
from audiomask.models.checkpoint import CheckpointError, load_model, save_model
from audiomask.models.convtasnet import ConvTasNet, ConvTasNetConfig
from audiomask.models.mossformer import MossFormer, MossFormer2, MossFormer2Config, MossFormerConfig
from audiomask.models.registry import build, list_models, register_model
from audiomask.models.tiger import TIGER, TIGERConfig

__all__ = [
    "EncoderMaskerDecoder", "ConvTasNet", "ConvTasNetConfig", "build", "list_models",
    "register_model", "load_model", "save_model", "CheckpointError", "TIGER", "TIGERConfig",
    "MossFormer", "MossFormerConfig", "MossFormer2", "MossFormer2Config", "D3NetAEC", "D3NetAECConfig",
]
