"""Streaming: exact stateful streaming for causal models."""

from audiomask.streaming.stateful import StreamingSession

__all__ = ["StreamingSession"]
