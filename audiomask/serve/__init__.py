"""HTTP and WebSocket serving of a separation model (``pip install 'audiomask[serve]'``):
``create_app(model, max_bytes, max_seconds, max_concurrency)`` → a FastAPI app with
``POST /separate`` (audio file in, zip of one WAV per source out) and ``WebSocket /stream``
(exact streaming of causal models). See :mod:`audiomask.serve.app` for the protocol."""

from __future__ import annotations

SERVE_EXTRA_HINT = "the server needs FastAPI and uvicorn: pip install 'audiomask[serve]'"


def create_app(*args, **kwargs):
    """See :func:`audiomask.serve.app.create_app`."""
    from audiomask.serve.app import create_app as _create_app

    return _create_app(*args, **kwargs)


__all__ = ["create_app", "SERVE_EXTRA_HINT"]
