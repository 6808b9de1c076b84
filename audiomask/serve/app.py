"""The HTTP/WebSocket server (FastAPI; ``pip install 'audiomask[serve]'``).

``create_app(model, max_bytes, max_seconds, max_concurrency, …)`` returns an ASGI app;
``audiomask serve MODEL`` runs it with uvicorn (:func:`audiomask.serve.server.uvicorn_config`).
Endpoints:

``GET /health``
    ``{"status": "ok", "model", "sample_rate", "n_src", "causal", "limits"}``.

``POST /separate`` (query ``downmix=true`` averages multi-channel audio)
    Body: the audio bytes themselves, or ``multipart/form-data`` with the audio in a field
    ``file`` (or the first part with a file name). A body that starts like an audio file (RIFF,
    RF64, FORM, fLaC, OggS, …) is taken as audio whatever its content type says, so ``curl
    --data-binary @mix.wav`` works with curl's default ``application/x-www-form-urlencoded``.
    Any format libsndfile reads, at 1 kHz to 768 kHz. Audio at another rate than the model's
    is resampled to it and the estimates back (``resample=False``: refused with 422).
    Answer: ``application/zip`` holding ``<stem>_s1.wav … <stem>_sN.wav``, 32-bit float WAV at
    the input's rate — the numbers of :func:`audiomask.separate` on the same audio.

``WebSocket /stream`` (causal models; exact stateful streaming, ``model.stream()``)
    1. client → text ``{"sample_rate": R, "format": "float32" | "int16"}`` (no other keys;
       ``format`` defaults to float32); R must be the model's rate (a stream is not
       resampled). 2. server → text ``{"type": "ready", "sample_rate", "n_src", "format",
       "latency_samples"}``. 3. client → binary messages of little-endian mono samples, any
       length. For each, server → one binary message with the samples that are final so far:
       ``n_src × m`` samples, source-major (all ``m`` of source 1, then source 2, …), same
       format (``m`` may be 0; the total lags the input by the model's latency). 4. client →
       text ``{"type": "end"}`` (also right after the header: an empty stream); server → the
       last binary message (so the output has the input's length), then text ``{"type":
       "done", "samples": T}``, and closes (1000). Errors: text ``{"type": "error",
       "message"}``, then close with the message as the reason and 1003 (bad header, format,
       data or message), 1008 (over the duration or message limits, nothing received for
       ``idle_timeout`` seconds, or open for twice ``max_seconds`` in all), 1011 (a server
       fault) or 1013 (too many streams; try again later). Under ``audiomask serve`` a frame
       over ``max_bytes`` is closed by the WebSocket layer with 1009.

Errors are JSON ``{"detail": message}``: 400 undecodable, truncated, empty, NaN/Inf or
multi-channel audio, a rate outside 1 kHz–768 kHz, or no audio in the request; 408 a body not
received within ``read_timeout`` seconds (under ``audiomask serve``, request headers not
received within it close the connection); 413 a body over ``max_bytes`` or audio over
``max_seconds``; 422 a sample rate the server does not resample; 503 (``Retry-After: 1``) when
``max_concurrency`` separations are already running. A separation slot is taken only once the
whole body has arrived, so slow uploads never hold one; requests over the limit are refused,
not queued. 408 and 413 close the connection. Memory is bounded by the open connections
(uvicorn's ``limit_concurrency``, ``audiomask serve --max-connections``) × ``max_bytes``.
Nothing is written to disk: uploads are decoded and results encoded in memory
(:mod:`audiomask.serve.audio_bytes`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

try:
    from fastapi import FastAPI, HTTPException, Request, Response, WebSocket, WebSocketDisconnect
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import ClientDisconnect
except ImportError as _e:  # the serve extra
    raise ImportError(f"the server needs FastAPI and uvicorn: pip install 'audiomask[serve]' ({_e})") from None

from audiomask.tasks import SEPARATION, task_of
from audiomask.audio import MAX_SAMPLE_RATE, AudioError
from audiomask.serve.audio_bytes import decode_audio, looks_like_audio, probe_duration, safe_stem, zip_sources

MULTIPART_OVERHEAD = 64 * 1024  # bytes of multipart framing allowed beyond max_bytes
RATE_RANGE = (1_000, MAX_SAMPLE_RATE)  # sample rates (Hz) an upload may declare (read_audio's ceiling)
STREAM_FORMATS = {"float32": np.dtype("<f4"), "int16": np.dtype("<i2")}
HEADER_KEYS = ("sample_rate", "format")
STREAM_TIME_FACTOR = 2.0  # a stream may stay open this many times max_seconds (wall clock)
_log = logging.getLogger("audiomask.serve")


class _HTTPProblem(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _StreamProblem(Exception):
    """Ends a stream: an error frame with ``message``, then a close with ``code``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Limits:
    """What one request or stream may use."""

    max_bytes: int
    max_seconds: float
    max_concurrency: int
    max_streams: int
    resample: bool
    read_timeout: float
    idle_timeout: float


def create_app(model: torch.nn.Module, max_bytes: int = 50_000_000, max_seconds: float = 600.0,
               max_concurrency: int = 2, max_streams: int | None = None, resample: bool = True,
               read_timeout: float = 60.0, idle_timeout: float = 30.0):
    """The FastAPI app serving ``model`` (see the module docstring for the endpoints).

    Args:
        max_bytes: largest upload (and largest WebSocket message), bytes.
        max_seconds: longest audio, per request and per stream.
        max_concurrency: separations running at once; more get 503.
        max_streams: open WebSocket streams at once (default ``max_concurrency``); more are
            closed with 1013.
        resample: resample audio at other rates (else 422).
        read_timeout: seconds a request body may take to arrive in full (else 408).
        idle_timeout: seconds a stream may send nothing, its header included (else closed
            with 1008). A stream may stay open for twice ``max_seconds`` in all.
    """
    if task_of(model).inputs != SEPARATION.inputs:
        raise ValueError(f"{model.name} is an echo canceller (two input signals); the server separates one "
                         "mixture — use `audiomask aec` or export the model")
    for name, value in (("max_bytes", max_bytes), ("max_seconds", max_seconds), ("max_concurrency", max_concurrency),
                        ("read_timeout", read_timeout), ("idle_timeout", idle_timeout)):
        if not value > 0:  # (NaN too)
            raise ValueError(f"{name} must be > 0, got {value!r}")
    if max_streams is not None and not max_streams >= 0:
        raise ValueError(f"max_streams must be >= 0, got {max_streams!r}")
    limits = Limits(int(max_bytes), float(max_seconds), int(max_concurrency),
                    int(max_concurrency if max_streams is None else max_streams), resample,
                    float(read_timeout), float(idle_timeout))
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
                         400: {"description": "bad audio or request"},
                         408: {"description": "body not received within read_timeout"},
                         413: {"description": "too large or too long"},
                         422: {"description": "wrong sample rate"}, 503: {"description": "busy"}})
    async def separate_endpoint(request: Request, downmix: bool = False) -> Response:
        try:  # the body first: a slow upload holds a connection, never a separation slot
            body = await _read_body(request, limits.max_bytes + MULTIPART_OVERHEAD, limits.read_timeout)
            name, data = _extract_audio(body, request.headers.get("content-type", ""), limits.max_bytes)
        except _HTTPProblem as e:  # the rest of the body may still be on its way: close
            raise HTTPException(e.status, str(e), headers={"Connection": "close"}) from None
        if busy["separations"] >= limits.max_concurrency:
            raise HTTPException(503, f"busy: {busy['separations']} separations running (the limit); retry later",
                                headers={"Retry-After": "1"})
        busy["separations"] += 1
        try:
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
        except _StreamProblem as e:
            await _ws_error(ws, e.code, str(e))
        except WebSocketDisconnect:
            pass
        except Exception:  # a server fault: say so and close, never an abnormal close
            _log.exception("stream failed")
            await _ws_error(ws, 1011, "internal error (the server logged it)")
        finally:
            busy["streams"] -= 1

    return app


# -- POST /separate ------------------------------------------------------------------------------
async def _read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit`` bytes (from the
    declared Content-Length, else while it arrives) and with 408 when it has not arrived in
    full within ``timeout`` seconds."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _HTTPProblem(413, f"request body of {int(declared)} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0

    async def read() -> None:
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _HTTPProblem(413, f"request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)

    try:
        await asyncio.wait_for(read(), timeout)
    except asyncio.TimeoutError:
        raise _HTTPProblem(408, f"request body not received within {timeout:g} s ({size} bytes arrived)") from None
    except ClientDisconnect:
        raise _HTTPProblem(400, f"the client disconnected after {size} bytes of the body") from None
    return b"".join(chunks)


def _extract_audio(body: bytes, content_type: str, max_bytes: int) -> tuple[str, bytes]:
    """``(file name, audio bytes)`` from a raw body (sniffed: one that starts like an audio file
    is audio whatever the content type says) or a multipart form (field ``file``, or the first
    file part)."""
    media_type = content_type.split(";")[0].strip().lower()
    if looks_like_audio(body):
        name, data = "upload", body
    elif media_type == "application/x-www-form-urlencoded":
        raise _HTTPProblem(400, "no audio in the form: send multipart/form-data with the file in a field named "
                                "'file', or the audio bytes as the body")
    elif media_type == "multipart/form-data":
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
        if not RATE_RANGE[0] <= rate <= RATE_RANGE[1]:
            raise _HTTPProblem(400, f"{name}: the header declares {rate} Hz; this server takes "
                                    f"{RATE_RANGE[0]} Hz to {RATE_RANGE[1]} Hz")
        if seconds * model.sample_rate < 0.5:  # resampled to no sample at all
            raise _HTTPProblem(400, f"{name}: {seconds * 1000:.3g} ms of audio is shorter than one sample at "
                                    f"{model.sample_rate} Hz")
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
    """The protocol of the module docstring; a client's fault raises :class:`_StreamProblem`."""
    deadline = asyncio.get_running_loop().time() + STREAM_TIME_FACTOR * limits.max_seconds
    message = await _receive(ws, limits, deadline)
    if message is None:
        return
    fmt = _check_header(message.get("text"), model.sample_rate)
    dtype = STREAM_FORMATS[fmt]
    session = model.stream()
    await ws.send_json({"type": "ready", "sample_rate": model.sample_rate, "n_src": model.n_src,
                        "format": fmt, "latency_samples": session.latency_samples})
    max_samples, received = int(limits.max_seconds * model.sample_rate), 0
    while True:
        message = await _receive(ws, limits, deadline)
        if message is None:
            return
        data, text = message.get("bytes"), message.get("text")
        if data is not None:
            if len(data) > limits.max_bytes:
                raise _StreamProblem(1008, f"a message of {len(data)} bytes exceeds the limit of "
                                           f"{limits.max_bytes} bytes")
            if len(data) % dtype.itemsize:
                raise _StreamProblem(1003, f"{len(data)} bytes is not a whole number of {fmt} samples")
            samples = _decode_samples(data, dtype)
            if not np.isfinite(samples).all():
                raise _StreamProblem(1003, "NaN or Inf samples")
            if received + samples.shape[0] > max_samples:
                raise _StreamProblem(1008, f"the stream exceeds the limit of {limits.max_seconds:g} s")
            received += samples.shape[0]
            out = (await run_in_threadpool(session.process, torch.from_numpy(samples)) if samples.size
                   else torch.zeros(model.n_src, 0))
            await ws.send_bytes(_encode_samples(out, dtype))
        else:
            if _message_type(text) != "end":
                raise _StreamProblem(1003, 'after the header, send binary samples or the text {"type": "end"}')
            # (a session that never processed a sample has nothing to flush)
            out = await run_in_threadpool(session.flush) if received else torch.zeros(model.n_src, 0)
            await ws.send_bytes(_encode_samples(out, dtype))
            await ws.send_json({"type": "done", "samples": received})
            return await ws.close(1000)


async def _receive(ws: WebSocket, limits: Limits, deadline: float) -> dict[str, Any] | None:
    """The next message with ``bytes`` or ``text``, within the idle timeout and before the
    stream's ``deadline`` (event-loop time); None when the client has gone."""
    loop = asyncio.get_running_loop()
    too_long = _StreamProblem(1008, f"open for {STREAM_TIME_FACTOR:g} × the {limits.max_seconds:g} s audio limit, "
                                    "the longest a stream may last")
    wait = min(limits.idle_timeout, deadline - loop.time())
    try:
        message = await asyncio.wait_for(ws.receive(), max(wait, 0.0))
    except asyncio.TimeoutError:
        if wait < limits.idle_timeout:
            raise too_long from None
        raise _StreamProblem(1008, f"idle: nothing received for {limits.idle_timeout:g} s") from None
    if loop.time() >= deadline:
        raise too_long
    if message["type"] == "websocket.disconnect":
        return None
    if message.get("bytes") is None and message.get("text") is None:
        raise _StreamProblem(1003, "an empty message")
    return message


def _check_header(text: str | None, sample_rate: int) -> str:
    """The stream's format from its JSON header; :class:`_StreamProblem` names what is wrong."""
    expected = f'{{"sample_rate": {sample_rate}, "format": "float32"}}'
    if text is None:
        raise _StreamProblem(1003, f"the first message must be a JSON text header {expected}, not binary")
    try:
        header = json.loads(text)
    except (ValueError, RecursionError):
        raise _StreamProblem(1003, f"the first message must be a JSON text header {expected} "
                                   "(it is not JSON)") from None
    if not isinstance(header, dict):
        raise _StreamProblem(1003, f"the first message must be a JSON text header {expected} "
                                   f"(got a JSON {type(header).__name__})")
    unknown = sorted(set(header) - set(HEADER_KEYS))
    if unknown:
        raise _StreamProblem(1003, f"unknown header key {_short(unknown[0])}: the header has "
                                   f"{' and '.join(HEADER_KEYS)}")
    fmt, rate = header.get("format", "float32"), header.get("sample_rate")
    if not isinstance(fmt, str) or fmt not in STREAM_FORMATS:
        raise _StreamProblem(1003, f"format {_short(fmt)}: use one of {sorted(STREAM_FORMATS)}")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate != sample_rate:
        raise _StreamProblem(1003, f"sample_rate {_short(rate)}: this stream takes {sample_rate} Hz "
                                   "(streams are not resampled)")
    return fmt


def _message_type(text: str) -> Any:
    """``"type"`` of a JSON object message, else None."""
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return message.get("type") if isinstance(message, dict) else None


def _short(value: Any) -> str:
    """``repr`` of a client's value, cut to fit a close reason."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


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
    """An error frame, then a close with ``code`` and the message as the reason (a close frame
    holds 123 bytes of it); nothing when the client has gone already."""
    try:
        await ws.send_json({"type": "error", "message": message})
        await ws.close(code, reason=message.encode()[:123].decode(errors="ignore"))
    except (WebSocketDisconnect, RuntimeError, OSError):  # gone, or closed while we spoke
        pass


def _version() -> str:
    from audiomask import __version__

    return __version__
