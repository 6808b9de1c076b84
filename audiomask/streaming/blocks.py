"""What a stream accepts: the checks and conversions every streaming session applies to its
input before any state is touched.

* ``as_float_block``: a torch tensor or numpy array → a floating tensor; integer PCM is scaled
  to [-1, 1) (``int16 / 2**15``, ``int32 / 2**31``, ``int8 / 2**7``, ``uint8`` centred on 128).
* ``finite_block``: NaN/Inf samples refused (``nonfinite="error"``) or set to 0 and counted
  (``"zero"``), so that one bad block never poisons a stream's state.
* ``check_sample_rate``: blocks at another rate than the model's are refused (streams are not
  resampled).
* ``block_samples``: a block length in milliseconds → samples, within bounds.
"""

from __future__ import annotations

import math

import numpy as np
import torch

NONFINITE_POLICIES = ("error", "zero")
MAX_BLOCK_S = 10.0  # longest block a stream takes from the command line (seconds)

# integer PCM: dtype → (offset, scale) such that (x - offset) / scale lies in [-1, 1)
_PCM = {torch.int8: (0, 2.0**7), torch.int16: (0, 2.0**15), torch.int32: (0, 2.0**31), torch.uint8: (128, 2.0**7)}


def check_nonfinite_policy(nonfinite: str) -> str:
    if nonfinite not in NONFINITE_POLICIES:
        raise ValueError(f"nonfinite must be one of {', '.join(map(repr, NONFINITE_POLICIES))}, got {nonfinite!r}")
    return nonfinite


def check_sample_rate(sample_rate: int | None, model: torch.nn.Module) -> None:
    """Refuse blocks announced at a rate other than the model's (``None``: not checked)."""
    if sample_rate is None:
        return
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float)) or not (
            math.isfinite(sample_rate) and sample_rate > 0):
        raise ValueError(f"sample_rate must be a positive number of Hz, got {sample_rate!r}")
    if sample_rate != model.sample_rate:
        raise ValueError(f"blocks at {sample_rate:g} Hz: {model.name} streams at {model.sample_rate} Hz "
                         f"(streams are not resampled; resample the input to {model.sample_rate} Hz first, "
                         "e.g. with audiomask.audio.resample, or soxr.ResampleStream for live audio)")


def as_float_block(block: torch.Tensor | np.ndarray, name: str = "block") -> torch.Tensor:
    """``block`` (torch tensor or numpy array, any shape) as a floating tensor: floats as they
    are, integer PCM scaled to [-1, 1). Other types and dtypes are refused with one line."""
    if isinstance(block, np.ndarray):
        if block.dtype.kind == "f":
            block = torch.from_numpy(np.require(block, np.float64 if block.dtype == np.float64 else np.float32, "CW"))
        elif block.dtype.kind in "iu" and block.dtype.itemsize <= 4:
            block = torch.from_numpy(np.require(block, block.dtype.newbyteorder("="), "CW"))
        else:
            raise TypeError(f"{name}: numpy dtype {block.dtype} is not audio; give float samples "
                            "or int8/int16/int32/uint8 PCM")
    elif not isinstance(block, torch.Tensor):
        raise TypeError(f"{name}: expected a torch tensor or numpy array, got {type(block).__name__}")
    if block.is_floating_point():
        return block
    if block.dtype in _PCM:
        offset, scale = _PCM[block.dtype]
        return (block.to(torch.float32) - offset) / scale
    raise TypeError(f"{name}: dtype {block.dtype} is not audio; give float samples or int8/int16/int32/uint8 PCM")


def finite_block(x: torch.Tensor, nonfinite: str, name: str = "block") -> tuple[torch.Tensor, int]:
    """``(x, 0)`` when every sample is finite; otherwise raise (``"error"``) or return ``x``
    with its NaN/Inf samples set to 0 and their count (``"zero"``)."""
    bad = ~torch.isfinite(x)
    count = int(bad.sum())
    if not count:
        return x, 0
    if nonfinite == "error":
        raise ValueError(f"{name}: {count} of {x.numel()} samples are NaN or Inf; the block was refused and "
                         "the stream is unchanged (nonfinite='zero' replaces them with 0 instead)")
    return x.masked_fill(bad, 0.0), count


def block_samples(block_ms: float, sample_rate: int, option: str = "--block-ms") -> int:
    """A block length in milliseconds → samples at ``sample_rate``: at least one sample and at
    most :data:`MAX_BLOCK_S` seconds, else a one-line ``ValueError`` naming ``option``."""
    check_block_ms(block_ms, option)
    samples = round(block_ms * sample_rate / 1000)
    if samples < 1:
        raise ValueError(f"{option} {block_ms:g} rounds to 0 samples at {sample_rate} Hz "
                         f"(one sample is {1000 / sample_rate:.3g} ms)")
    return samples


def check_block_ms(block_ms: float, option: str = "--block-ms") -> None:
    """Refuse a block length that is not a number of milliseconds in (0, MAX_BLOCK_S s]."""
    if not (math.isfinite(block_ms) and 0 < block_ms <= 1000 * MAX_BLOCK_S):
        raise ValueError(f"{option} must be a number of milliseconds in (0, {1000 * MAX_BLOCK_S:g}], "
                         f"got {block_ms:g}")
