"""Comparing a state dict with the names and shapes a module expects."""

from __future__ import annotations

from typing import Mapping, Sequence

import torch


def state_dict_problems(expected: Mapping[str, Sequence[int]], state: Mapping[str, torch.Tensor]) -> list[str]:
    """What is wrong with ``state`` against ``expected`` (name → shape): the missing and the
    unexpected names (the first five of each, and how many) and every mis-shaped tensor.
    Empty when ``state`` fits. Converters call it with the foreign toolkit's names."""
    problems: list[str] = []
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    if missing:
        problems.append(f"missing {missing[:5]}{' …' if len(missing) > 5 else ''} ({len(missing)})")
    if extra:
        problems.append(f"unexpected {extra[:5]}{' …' if len(extra) > 5 else ''} ({len(extra)})")
    for k, shape in expected.items():
        if k in state and tuple(state[k].shape) != tuple(shape):
            problems.append(f"{k} has shape {tuple(state[k].shape)}, expected {tuple(shape)}")
    return problems
