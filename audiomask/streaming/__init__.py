"""Streaming: exact stateful streaming for causal models, chunked overlap-add for any model,
and a real-time API."""

from audiomask.streaming.chunked import separate_chunked
from audiomask.streaming.realtime import LatencyReport, Stream, simulate
from audiomask.streaming.session import StreamingSession

__all__ = ["StreamingSession", "separate_chunked", "Stream", "LatencyReport", "simulate"]
