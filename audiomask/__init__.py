"""audiomask: speech separation and audio masking with encoder → masker → decoder models."""

__version__ = "0.1.0"

from audiomask.audio import AudioError  # noqa: E402
from audiomask.models import (  # noqa: E402
    CheckpointError,
    ConvTasNet,
    EncoderMaskerDecoder,
    build,
    list_models,
)
from audiomask.loading import load  # noqa: E402
from audiomask.runtime import tune_allocator  # noqa: E402
from audiomask.separation import separate, separate_file  # noqa: E402
from audiomask.streaming import Stream  # noqa: E402

__all__ = [
    "__version__", "build", "load", "list_models", "ConvTasNet", "EncoderMaskerDecoder",
    "CheckpointError", "AudioError", "separate", "separate_file", "Stream", "tune_allocator",
]
