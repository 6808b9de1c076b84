"""The HTTP/WebSocket server (FastAPI; ``pip install 'audiomask[serve]'``).

``create_app(model, max_bytes, max_seconds, max_concurrency)`` returns an ASGI app;
``audiomask serve MODEL`` runs it with uvicorn. Endpoints:

``GET /health``
    ``{"status": "ok", "model", "sample_rate", "n_src", "causal", "limits"}``.

``POST /separate`` (query ``downmix=true`` averages multi-channel audio)
    Body: ``multipart/form-data`` with the audio in a field ``file`` (or the first part with a
    file name), or the audio bytes themselves (any other content type). Any format libsndfile
    reads. Audio at another rate than the model's is resampled to it and the estimates back
    (``resample=False``: refused with 422). Answer: ``application/zip`` holding
    ``<stem>_s1.wav … <stem>_sN.wav``, 32-bit float WAV at the input's rate — the numbers of
    :func:`audiomask.separate` on the same audio.

``WebSocket /stream`` (causal models; exact stateful streaming, ``model.stream()``)
    1. client → text ``{"sample_rate": R, "format": "float32" | "int16"}``; R must be the
       model's rate (a stream is not resampled). 2. server → text ``{"type": "ready",
       "sample_rate", "n_src", "format", "latency_samples"}``. 3. client → binary messages of
       little-endian mono samples, any length. For each, server → one binary message with the
       samples that are final so far: ``n_src × m`` samples, source-major (all ``m`` of source
       1, then source 2, …), same format (``m`` may be 0; the total lags the input by the
       model's latency). 4. client → text ``{"type": "end"}``; server → the last binary message
       (so the output has the input's length), then text ``{"type": "done", "samples": T}``,
       and closes (1000). Errors: text ``{"type": "error", "message"}``, then close with 1003
       (bad header, format or data), 1008 (over the duration or message limits) or 1013 (too
       many streams; try again later).

Errors are JSON ``{"detail": message}``: 400 undecodable, truncated, empty, NaN/Inf or
multi-channel audio, or no audio in the request; 413 a body over ``max_bytes`` or audio over
``max_seconds``; 422 a sample rate the server does not resample; 503 (``Retry-After: 1``) when
``max_concurrency`` separations are already running — requests are refused, not queued, so
memory stays bounded by ``max_concurrency × max_bytes``. Nothing is written to disk: uploads
are decoded and results encoded in memory (:mod:`audiomask.serve.audio_bytes`).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

try:
    from fastapi import FastAPI, HTTPException, Request, Response, WebSocket, WebSocketDisconnect
    from starlette.concurrency import run_in_threadpool
except ImportError as _e:  # the serve extra
    raise ImportError(f"the server needs FastAPI and uvicorn: pip install 'audiomask[serve]' ({_e})") from None

from audiomask.audio import AudioError
from audiomask.serve.audio_bytes import decode_audio, probe_duration, safe_stem, zip_sources

MULTIPART_OVERHEAD = 64 * 1024  # bytes of multipart framing allowed beyond max_bytes
HEADER_TIMEOUT_S = 30.0  # a stream must send its JSON header within this
STREAM_FORMATS = {"float32": np.dtype("<f4"), "int16": np.dtype("<i2")}


class _HTTPProblem(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Limits:
    """What one request or stream may use."""

    max_bytes: int
    max_seconds: float
    max_concurrency: int
    max_streams: int
    resample: bool


def create_app(model: torch.nn.Module, max_bytes: int = 50_000_000, max_seconds: float = 600.0,
               max_concurrency: int = 2, max_streams: int | None = None, resample: bool = True):
    """The FastAPI app serving ``model`` (see the module docstring for the endpoints).

    Args:
        max_bytes: largest upload (and largest WebSocket message), bytes.
        max_seconds: longest audio, per request and per stream.
        max_concurrency: separations running at once; more get 503.
        max_streams: open WebSocket streams at once (default ``max_concurrency``); more are
            closed with 1013.
        resample: resample audio at other rates (else 422).
    """
    if getattr(model, "task", "separation") == "aec":
        raise ValueError(f"{model.name} is an echo canceller (two input signals); the server separates one "
                         "mixture — use `audiomask aec` or export the model")
    if max_bytes <= 0 or max_seconds <= 0 or max_concurrency <= 0 or (max_streams is not None and max_streams < 0):
        raise ValueError("max_bytes, max_seconds and max_concurrency must be > 0 (max_streams >= 0)")
    limits = Limits(int(max_bytes), float(max_seconds), int(max_concurrency),
                    int(max_concurrency if max_streams is None else max_streams), resample)
    model = model.eval()
    busy = {"separations": 0, "streams": 0}  # one event loop: no lock needed

    app = FastAPI(title="audiomask", version=_version(),
                  description=f"Speech separation with {model.name} at {model.sample_rate} Hz.")
    app.state.model, app.state.limits, app.state.busy = model, limits, busy

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": model.name, "sample_rate": model.sample_rate, "n_src": model.n_src,
                "causal": bool(model.causal), "limits": limits.__dict__, "busy": dict(busy)}

    @app.post("/separate", response_class=Response,
              responses={200: {"content": {"application/zip": {}}, "description": "one WAV per source"},
                         400: {"description": "bad audio"}, 413: {"description": "too large or too long"},
                         422: {"description": "wrong sample rate"}, 503: {"description": "busy"}})
    async def separate_endpoint(request: Request, downmix: bool = False) -> Response:
        if busy["separations"] >= limits.max_concurrency:
            raise HTTPException(503, f"busy: {busy['separations']} separations running (the limit); retry later",
                                headers={"Retry-After": "1"})
        busy["separations"] += 1
        try:
            body = await _read_body(request, limits.max_bytes + MULTIPART_OVERHEAD)
            name, data = _extract_audio(body, request.headers.get("content-type", ""), limits.max_bytes)
            stem = safe_stem(name)
            archive, rate = await run_in_threadpool(_separate_upload, model, data, name, stem, downmix, limits)
        except _HTTPProblem as e:
            raise HTTPException(e.status, str(e)) from None
        finally:
            busy["separations"] -= 1
        return Response(archive, media_type="application/zip", headers={
            "Content-Disposition": f'attachment; filename="{stem}_sources.zip"',
            "X-Audiomask-Sample-Rate": str(rate), "X-Audiomask-Sources": str(model.n_src)})

    @app.websocket("/stream")
    async def stream_endpoint(ws: WebSocket) -> None:
        await ws.accept()
        if not model.causal:
            return await _ws_error(ws, 1003, f"{model.name} is not causal: it cannot stream (use POST /separate)")
        if busy["streams"] >= limits.max_streams:
            return await _ws_error(ws, 1013, f"busy: {busy['streams']} streams open (the limit); try again later")
        busy["streams"] += 1
        try:
            await _serve_stream(ws, model, limits)
        except WebSocketDisconnect:
            pass
        finally:
            busy["streams"] -= 1

    return app


# -- POST /separate ------------------------------------------------------------------------------
async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit`` bytes (from the
    declared Content-Length, else while it arrives)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _HTTPProblem(413, f"request body of {int(declared)} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _HTTPProblem(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _extract_audio(body: bytes, content_type: str, max_bytes: int) -> tuple[str, bytes]:
    """``(file name, audio bytes)`` from a multipart form (field ``file``, or the first file
    part) or a raw body."""
    if content_type.lower().startswith("application/x-www-form-urlencoded"):
        raise _HTTPProblem(400, "no audio in the form: send multipart/form-data with the file in a field named "
                                "'file', or the audio bytes as the body")
    if content_type.lower().startswith("multipart/form-data"):
        parts = _parse_multipart(body, content_type)
        chosen = next((p for p in parts if p[0] == "file"), None) or next((p for p in parts if p[1]), None)
        if chosen is None:
            raise _HTTPProblem(400, "no audio in the form: send the file in a field named 'file'")
        name, data = chosen[1] or "upload", chosen[2]
    else:
        name, data = "upload", body
    if not data:
        raise _HTTPProblem(400, f"{name}: empty (0 bytes); send the audio as multipart field 'file' or as the body")
    if len(data) > max_bytes:
        raise _HTTPProblem(413, f"{name}: {len(data)} bytes exceeds the limit of {max_bytes} bytes")
    return name, data


def _parse_multipart(body: bytes, content_type: str) -> list[tuple[str, str, bytes]]:
    """``[(field name, file name or "", data)]`` of a multipart body, in memory."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise _HTTPProblem(400, "multipart/form-data without a boundary")
    parts: list[dict[str, Any]] = []
    header: dict[str, bytes] = {"field": b"", "value": b""}

    def on_part_begin() -> None:
        parts.append({"headers": {}, "data": bytearray()})

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1]["data"] += data[start:end]

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header["value"] += data[start:end]

    def on_header_end() -> None:
        parts[-1]["headers"][header["field"].decode("latin-1").lower()] = header["value"]
        header["field"], header["value"] = b"", b""

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_part_data": on_part_data, "on_header_field": on_header_field,
        "on_header_value": on_header_value, "on_header_end": on_header_end})
    try:
        parser.write(body)
        parser.finalize()
    except Exception as e:  # python-multipart raises its own error types
        raise _HTTPProblem(400, f"malformed multipart body ({e})") from None
    result = []
    for part in parts:
        _, disposition = parse_options_header(part["headers"].get("content-disposition", b""))
        field = disposition.get(b"name", b"").decode("utf-8", "replace")
        filename = disposition.get(b"filename", b"").decode("utf-8", "replace")
        result.append((field, filename, bytes(part["data"])))
    return result


def _separate_upload(model: torch.nn.Module, data: bytes, name: str, stem: str, downmix: bool,
                     limits: Limits) -> tuple[bytes, int]:
    """Decode, check, separate, zip (in a worker thread)."""
    from audiomask.separation import separate

    try:
        seconds, rate = probe_duration(data, name)
        if seconds > limits.max_seconds:
            raise _HTTPProblem(413, f"{name}: {seconds:.1f} s of audio exceeds the limit of {limits.max_seconds:g} s")
        if rate != model.sample_rate and not limits.resample:
            raise _HTTPProblem(422, f"{name}: audio at {rate} Hz; this server takes {model.sample_rate} Hz "
                                    "(resampling is off)")
        decoded = decode_audio(data, name, downmix)
        estimates = separate(model, decoded.wav[0], decoded.sample_rate)
    except AudioError as e:
        raise _HTTPProblem(400, str(e)) from None
    return zip_sources(estimates, decoded.sample_rate, stem), decoded.sample_rate


# -- WebSocket /stream ---------------------------------------------------------------------------
async def _serve_stream(ws: WebSocket, model: torch.nn.Module, limits: Limits) -> None:
    try:
        header = json.loads(await asyncio.wait_for(ws.receive_text(), HEADER_TIMEOUT_S))
        if not isinstance(header, dict):
            raise ValueError("not a JSON object")
    except asyncio.TimeoutError:
        return await _ws_error(ws, 1008, f"no JSON header within {HEADER_TIMEOUT_S:g} s")
    except (ValueError, KeyError, TypeError) as e:  # bad JSON, or a binary message first
        return await _ws_error(ws, 1003, f"the first message must be a JSON text header "
                                         f'{{"sample_rate": {model.sample_rate}, "format": "float32"}} ({e})')
    rate, fmt = header.get("sample_rate"), header.get("format", "float32")
    if fmt not in STREAM_FORMATS:
        return await _ws_error(ws, 1003, f"format {fmt!r}: use one of {sorted(STREAM_FORMATS)}")
    if rate != model.sample_rate:
        return await _ws_error(ws, 1003, f"sample_rate {rate!r}: this stream takes {model.sample_rate} Hz "
                                         "(streams are not resampled)")
    dtype = STREAM_FORMATS[fmt]
    session = model.stream()
    await ws.send_json({"type": "ready", "sample_rate": model.sample_rate, "n_src": model.n_src,
                        "format": fmt, "latency_samples": session.latency_samples})
    max_samples, received = int(limits.max_seconds * model.sample_rate), 0
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        data, text = message.get("bytes"), message.get("text")
        if data is not None:
            if len(data) > limits.max_bytes:
                return await _ws_error(ws, 1008, f"a message of {len(data)} bytes exceeds the limit of "
                                                 f"{limits.max_bytes} bytes")
            if len(data) % dtype.itemsize:
                return await _ws_error(ws, 1003, f"{len(data)} bytes is not a whole number of {fmt} samples")
            samples = _decode_samples(data, dtype)
            if not np.isfinite(samples).all():
                return await _ws_error(ws, 1003, "NaN or Inf samples")
            received += samples.shape[0]
            if received > max_samples:
                return await _ws_error(ws, 1008, f"the stream exceeds the limit of {limits.max_seconds:g} s")
            out = await run_in_threadpool(session.process, torch.from_numpy(samples))
            await ws.send_bytes(_encode_samples(out, dtype))
        elif text is not None:
            try:
                kind = json.loads(text).get("type")
            except (ValueError, AttributeError):
                kind = None
            if kind != "end":
                return await _ws_error(ws, 1003, 'text messages after the header: only {"type": "end"}')
            out = await run_in_threadpool(session.flush)
            await ws.send_bytes(_encode_samples(out, dtype))
            await ws.send_json({"type": "done", "samples": received})
            return await ws.close(1000)


def _decode_samples(data: bytes, dtype: np.dtype) -> np.ndarray:
    samples = np.frombuffer(data, dtype=dtype)
    if dtype.kind == "i":
        return samples.astype(np.float32) / 32768.0
    return samples.astype(np.float32)


def _encode_samples(out: torch.Tensor, dtype: np.dtype) -> bytes:
    """``[n_src, m]`` → source-major little-endian bytes (int16: clipped to ±1, rounded)."""
    array = out.detach().cpu().numpy().astype(np.float32)
    if dtype.kind == "i":
        array = np.clip(np.round(array * 32768.0), -32768, 32767)
    return np.ascontiguousarray(array, dtype=dtype).tobytes()


async def _ws_error(ws: WebSocket, code: int, message: str) -> None:
    await ws.send_json({"type": "error", "message": message})
    await ws.close(code, reason=message[:120])


def _version() -> str:
    from audiomask import __version__

    return __version__
