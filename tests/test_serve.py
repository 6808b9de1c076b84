"""The HTTP/WebSocket server, driven over loopback by real clients (httpx, websockets, raw
sockets) against a uvicorn server in a thread with the configuration ``audiomask serve`` uses:
valid, corrupt, truncated, oversized, too long, multi-channel and wrong-rate audio; the numbers
equal :func:`audiomask.separate`; concurrency is bounded; no temporary file appears; slow
uploads, idle streams and malformed requests or messages (also fuzzed) get 4xx or a clean
close and never hold the server."""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
import torch
import uvicorn
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

import audiomask
from audiomask.serve import create_app
from audiomask.serve.audio_bytes import decode_audio, looks_like_audio
from audiomask.serve.server import uvicorn_config

QUICKSTART = Path(__file__).resolve().parents[1] / "egs" / "quickstart" / "mix.wav"


@contextlib.contextmanager
def serving(app, max_connections: int = 32):
    """Run ``app`` with uvicorn as ``audiomask serve`` does, on a free loopback port in a
    thread; yield its address."""
    server = uvicorn.Server(uvicorn_config(app, "127.0.0.1", 0, max_connections, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def model():
    # (no torch.set_num_threads here: with torch 2.13's MKL, going from 1 back to 2 threads
    # breaks batched torch.linalg.solve for the rest of the process, which later tests use)
    return audiomask.load("convtasnet-mini2mix-causal")  # causal: /separate and /stream


@pytest.fixture(scope="module")
def clip() -> tuple[np.ndarray, int]:
    """2 s of the bundled two-speaker example, 16 kHz (the model runs at 8 kHz)."""
    wav, rate = sf.read(QUICKSTART, dtype="float32")
    return wav[: 2 * rate], rate


@pytest.fixture(scope="module")
def server(model):
    app = create_app(model, max_bytes=400_000, max_seconds=3.0, max_concurrency=2, max_streams=1)
    with serving(app) as address:
        yield address


def wav_bytes(wav: np.ndarray, rate: int, subtype: str = "FLOAT") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wav, rate, subtype=subtype, format="WAV")
    return buf.getvalue()


def post(address: str, data: bytes, name: str = "mix.wav", params: dict | None = None) -> httpx.Response:
    return httpx.post(f"http://{address}/separate", files={"file": (name, data, "audio/wav")},
                      params=params, timeout=60)


def unzip_sources(response: httpx.Response) -> tuple[list[str], np.ndarray, int]:
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        names = archive.namelist()
        decoded = [sf.read(io.BytesIO(archive.read(n)), dtype="float32") for n in names]
    return names, np.stack([d[0] for d in decoded]), decoded[0][1]


# -- POST /separate ---------------------------------------------------------------------------------
def test_separate_returns_the_numbers_of_separate(server, model, clip):
    """16 kHz audio to an 8 kHz model: resampled there and back, as audiomask.separate does."""
    wav, rate = clip
    response = post(server, wav_bytes(wav, rate), name="my talk.wav")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["x-audiomask-sample-rate"] == "16000"
    names, sources, out_rate = unzip_sources(response)
    assert names == ["my_talk_s1.wav", "my_talk_s2.wav"] and out_rate == rate
    expected = audiomask.separate(model, torch.from_numpy(wav), rate).numpy()
    assert sources.shape == expected.shape == (2, len(wav))
    assert np.abs(sources - expected).max() <= 1e-5


def test_separate_takes_a_raw_body_at_the_model_rate(server, model, clip):
    wav = audiomask.audio.resample(torch.from_numpy(clip[0]), clip[1], 8000).numpy()
    response = httpx.post(f"http://{server}/separate", content=wav_bytes(wav, 8000),
                          headers={"content-type": "audio/wav"}, timeout=60)
    assert response.status_code == 200, response.text
    _, sources, rate = unzip_sources(response)
    assert rate == 8000
    assert np.abs(sources - audiomask.separate(model, torch.from_numpy(wav), 8000).numpy()).max() <= 1e-5


def test_wrong_rate_is_refused_with_both_rates_when_resampling_is_off(model, clip):
    with serving(create_app(model, resample=False)) as address:
        response = post(address, wav_bytes(*clip))
        assert response.status_code == 422
        assert "16000 Hz" in response.json()["detail"] and "8000 Hz" in response.json()["detail"]


@pytest.mark.parametrize("case,status,words", [
    ("random bytes", 400, "cannot decode"),
    ("truncated", 400, "truncated"),
    ("empty", 400, "empty"),
    ("nan", 400, "NaN or Inf"),
    ("stereo", 400, "downmix=true"),
    ("too large", 413, "exceeds the limit of"),
    ("too long", 413, "exceeds the limit of 3 s"),
])
def test_bad_audio_gets_a_clear_4xx(server, clip, case, status, words):
    wav, rate = clip
    data = {
        "random bytes": bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)),
        "truncated": wav_bytes(wav, rate)[:30000],
        "empty": b"",
        "nan": wav_bytes(np.where(np.arange(len(wav)) == 100, np.nan, wav).astype(np.float32), rate),
        "stereo": wav_bytes(np.stack([wav, wav], 1), rate),
        "too large": wav_bytes(np.tile(wav, 4), rate),  # 8 s of float32, 512 kB: over 400 kB
        "too long": wav_bytes(np.tile(wav[: len(wav) // 2], 4), rate, "PCM_16"),  # 4 s, 128 kB
    }[case]
    response = post(server, data)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]
    if case in ("truncated", "nan", "stereo", "random bytes"):
        assert response.json()["detail"].startswith("mix.wav: ")


def test_downmix_parameter(server, model, clip):
    wav, rate = clip
    response = post(server, wav_bytes(np.stack([wav, 0.5 * wav], 1), rate), params={"downmix": "true"})
    assert response.status_code == 200, response.text
    expected = audiomask.separate(model, torch.from_numpy(0.75 * wav), rate).numpy()
    assert np.abs(unzip_sources(response)[1] - expected).max() <= 1e-5


def test_no_audio_in_the_form(server):
    response = httpx.post(f"http://{server}/separate", data={"note": "hello"}, timeout=30)  # urlencoded
    assert response.status_code == 400 and "field named 'file'" in response.json()["detail"]
    response = httpx.post(f"http://{server}/separate", data={"note": "hello"}, timeout=30,
                          files={"other": (None, b"text")})  # multipart without a file part
    assert response.status_code == 400 and "field named 'file'" in response.json()["detail"]


class GatedModel(torch.nn.Module):
    """Copies the mixture to two outputs once ``release`` is set (holds a separation slot)."""

    name, sample_rate, n_src, causal = "gated", 8000, 2, False

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(()))
        self.entered, self.release = threading.Event(), threading.Event()

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        self.entered.set()
        assert self.release.wait(30)
        return torch.stack([mix, -mix], dim=-2)


def test_concurrency_is_bounded_with_503():
    gated = GatedModel()
    data = wav_bytes(np.zeros(800, dtype=np.float32), 8000)
    with serving(create_app(gated, max_concurrency=1)) as address:
        first: dict = {}
        worker = threading.Thread(target=lambda: first.update(r=post(address, data)))
        worker.start()
        assert gated.entered.wait(30)
        busy = post(address, data)
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert "busy" in busy.json()["detail"]
        gated.release.set()
        worker.join(30)
        assert first["r"].status_code == 200
        assert post(address, data).status_code == 200  # the slot is free again


def test_no_temporary_files_and_no_leaked_descriptors(server, clip):
    """Uploads over a megabyte (where form parsers spool to disk) leave nothing behind."""
    watched = [Path(tempfile.gettempdir()), Path.cwd()]
    before = {d: set(os.listdir(d)) for d in watched}
    fds = len(os.listdir("/proc/self/fd"))
    big_app_model = audiomask.build("convtasnet", "tiny").eval()
    wav, rate = clip
    with serving(create_app(big_app_model, max_bytes=5_000_000, max_seconds=30)) as address:
        long = np.tile(wav, 5)  # 10 s, 640 kB float32 ... and 1.3 MB as float64
        for data in (wav_bytes(long, rate), wav_bytes(long, rate, "DOUBLE"), b"garbage" * 1000):
            post(address, data)
    for d in watched:
        assert set(os.listdir(d)) - before[d] == set(), d
    assert len(os.listdir("/proc/self/fd")) <= fds + 2  # uvicorn's own sockets may linger briefly


def test_health(server):
    body = httpx.get(f"http://{server}/health", timeout=10).json()
    assert body["model"] == "convtasnet" and body["sample_rate"] == 8000 and body["causal"] is True
    assert body["limits"]["max_bytes"] == 400_000


# -- WebSocket /stream ----------------------------------------------------------------------------------
def stream_over_ws(address: str, wav: np.ndarray, fmt: str = "float32", block: int = 80) -> tuple[np.ndarray, dict]:
    dtype = {"float32": "<f4", "int16": "<i2"}[fmt]
    with connect(f"ws://{address}/stream") as ws:
        ws.send(json.dumps({"sample_rate": 8000, "format": fmt}))
        ready = json.loads(ws.recv())
        assert ready["type"] == "ready" and ready["n_src"] == 2
        outs = []
        for i in range(0, len(wav), block):
            chunk = wav[i : i + block]
            payload = (np.round(chunk * 32768).clip(-32768, 32767) if fmt == "int16" else chunk).astype(dtype)
            ws.send(payload.tobytes())
            outs.append(np.frombuffer(ws.recv(), dtype=dtype).reshape(2, -1))
        ws.send(json.dumps({"type": "end"}))
        outs.append(np.frombuffer(ws.recv(), dtype=dtype).reshape(2, -1))
        done = json.loads(ws.recv())
    out = np.concatenate(outs, axis=1).astype(np.float32)
    return (out / 32768 if fmt == "int16" else out), done


def test_websocket_stream_equals_offline_separation(server, model, clip):
    wav = audiomask.audio.resample(torch.from_numpy(clip[0]), clip[1], 8000).numpy()[:8000]
    out, done = stream_over_ws(server, wav)
    assert done == {"type": "done", "samples": 8000}
    expected = audiomask.separate(model, torch.from_numpy(wav), 8000).numpy()
    assert out.shape == expected.shape and np.abs(out - expected).max() <= 1e-4
    out16, _ = stream_over_ws(server, wav, "int16", block=333)
    clipped = np.clip(expected, -1, 32767 / 32768)  # int16 output is clipped (these estimates peak at 1.9)
    assert np.abs(out16 - clipped).max() <= 3 / 32768 + 1e-4  # two roundings to 16 bits


def ws_refusal(address: str, header: dict | None, then: bytes | None = None) -> tuple[dict, int]:
    with connect(f"ws://{address}/stream") as ws:
        if header is not None:
            ws.send(json.dumps(header))
            if then is not None:
                assert json.loads(ws.recv())["type"] == "ready"
                ws.send(then)
        else:
            ws.send(b"\x00\x01")
        message = json.loads(ws.recv())
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv()
    return message, closed.value.rcvd.code


def test_websocket_refusals(server, model):
    message, code = ws_refusal(server, {"sample_rate": 16000, "format": "float32"})
    assert code == 1003 and "this stream takes 8000 Hz" in message["message"]
    message, code = ws_refusal(server, {"sample_rate": 8000, "format": "mp3"})
    assert code == 1003 and "format 'mp3'" in message["message"]
    message, code = ws_refusal(server, None)
    assert code == 1003 and "JSON text header" in message["message"]
    message, code = ws_refusal(server, {"sample_rate": 8000}, then=b"\x00" * 7)
    assert code == 1003 and "not a whole number of float32 samples" in message["message"]
    too_long = np.zeros(8000 * 4, dtype="<f4").tobytes()  # 4 s over the 3 s limit
    message, code = ws_refusal(server, {"sample_rate": 8000}, then=too_long)
    assert code == 1008 and "exceeds the limit of 3 s" in message["message"]


def test_websocket_streams_are_bounded(server):
    with connect(f"ws://{server}/stream") as first:  # max_streams=1
        first.send(json.dumps({"sample_rate": 8000}))
        assert json.loads(first.recv())["type"] == "ready"
        with connect(f"ws://{server}/stream") as second:  # refused at once, before any header
            message = json.loads(second.recv())
            with pytest.raises(ConnectionClosed) as closed:
                second.recv()
        assert closed.value.rcvd.code == 1013 and "busy: 1 streams open" in message["message"]


def test_websocket_refuses_a_non_causal_model():
    with serving(create_app(audiomask.build("convtasnet", "tiny"))) as address:
        with connect(f"ws://{address}/stream") as ws:  # refused at once, before any header
            message = json.loads(ws.recv())
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv()
    assert closed.value.rcvd.code == 1003 and "not causal" in message["message"]


# -- the pieces ---------------------------------------------------------------------------------------
def test_create_app_refuses_echo_cancellers():
    with pytest.raises(ValueError, match="echo canceller"):
        create_app(audiomask.load("d3net-aec-small"))


@pytest.mark.parametrize("kwargs,words", [({"read_timeout": 0}, "read_timeout must be > 0, got 0"),
                                         ({"idle_timeout": float("nan")}, "idle_timeout must be > 0, got nan"),
                                         ({"max_bytes": -1}, "max_bytes must be > 0, got -1"),
                                         ({"max_streams": -1}, "max_streams must be >= 0, got -1")])
def test_create_app_refuses_bad_limits(kwargs, words):
    with pytest.raises(ValueError, match=words):
        create_app(audiomask.build("convtasnet", "tiny"), **kwargs)


def test_uvicorn_config_carries_the_limits():
    app = create_app(audiomask.build("convtasnet", "tiny"), max_bytes=1234)
    config = uvicorn_config(app, "127.0.0.1", 0, max_connections=7)
    assert (config.limit_concurrency, config.ws_max_size, config.host) == (7, 1234, "127.0.0.1")
    with pytest.raises(ValueError, match="max_connections must be > 0"):
        uvicorn_config(app, "127.0.0.1", 0, max_connections=0)


def test_decoding_without_memfd_gives_the_same_samples(monkeypatch, clip):
    wav, rate = clip
    data = wav_bytes(wav, rate)
    with_memfd = decode_audio(data, "x.wav")
    monkeypatch.delattr(os, "memfd_create")
    without = decode_audio(data, "x.wav")
    assert without.sample_rate == with_memfd.sample_rate == rate
    assert torch.equal(without.wav, with_memfd.wav)
    with pytest.raises(audiomask.audio.AudioError, match="x.wav: cannot decode"):
        decode_audio(b"not audio at all", "x.wav")


# -- hardening: slow clients, idle streams, malformed requests and messages (issue 24 item 4) -------
READ_TIMEOUT, IDLE_TIMEOUT = 3.0, 1.0


@pytest.fixture(scope="module")
def hardened(model):
    """Two separation slots, two streams, short read and idle timeouts."""
    app = create_app(model, max_bytes=400_000, max_seconds=3.0, max_concurrency=2, max_streams=2,
                     read_timeout=READ_TIMEOUT, idle_timeout=IDLE_TIMEOUT)
    with serving(app) as address:
        yield address


def wav_at_model_rate(seconds: float = 0.25) -> bytes:
    wav, rate = sf.read(QUICKSTART, dtype="float32", frames=int(16000 * seconds))
    return wav_bytes(audiomask.audio.resample(torch.from_numpy(wav), rate, 8000).numpy(), 8000)


def raw_exchange(address: str, request: bytes, timeout: float = 20.0) -> tuple[int | None, bytes]:
    """Send ``request`` on a new connection; ``(status, response bytes)`` once the server closes it
    (None: closed without a response). The request should say ``Connection: close``."""
    host, port = address.split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(request)
        received = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
    status = int(received.split(b" ", 2)[1]) if received.startswith(b"HTTP/1.1 ") else None
    return status, received


def http_request(body: bytes, headers: dict[str, str]) -> bytes:
    lines = ["POST /separate HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def test_slow_uploads_do_not_hold_separation_slots(hardened):
    """Two clients trickling their bodies at 5 bytes/s (as many as there are slots): a normal
    request is served meanwhile, and the slow ones get 408 and a closed connection once their
    body has not arrived within the read timeout, although bytes keep coming."""
    data = wav_at_model_rate()
    host, port = hardened.split(":")
    stop, answers = threading.Event(), {}

    def trickle(i: int) -> None:
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            start = time.monotonic()
            sock.sendall(http_request(b"", {"Content-Type": "audio/wav", "Content-Length": str(len(data))}))
            try:
                for byte in data[:100]:  # 20 s at most
                    sock.sendall(bytes([byte]))
                    if stop.wait(0.2):
                        break
                    sock.setblocking(False)
                    try:
                        if sock.recv(65536, socket.MSG_PEEK):
                            break  # answered
                    except BlockingIOError:
                        pass
                    finally:
                        sock.setblocking(True)
            except (BrokenPipeError, ConnectionResetError):
                pass
            received = b""
            try:
                while chunk := sock.recv(65536):
                    received += chunk
            except ConnectionResetError:  # the server closed while bytes were still coming
                pass
            answers[i] = (received, time.monotonic() - start)

    slow = [threading.Thread(target=trickle, args=(i,)) for i in range(2)]
    for thread in slow:
        thread.start()
    time.sleep(0.5)  # both are sending their bodies
    normal = httpx.post(f"http://{hardened}/separate", content=data, headers={"content-type": "audio/wav"}, timeout=30)
    normal_done = time.monotonic()
    assert normal.status_code == 200, normal.text
    assert not answers, "the slow uploads were answered before the normal request"
    for thread in slow:
        thread.join(30)
    stop.set()
    assert len(answers) == 2
    for received, seconds in answers.values():
        assert received.startswith(b"HTTP/1.1 408 "), received[:200]
        assert b"connection: close" in received.lower() and b"not received within 3 s" in received
        assert READ_TIMEOUT - 0.1 <= seconds <= READ_TIMEOUT + 5
    assert time.monotonic() >= normal_done


def test_open_connections_are_limited_to_max_connections(model):
    data = wav_at_model_rate()
    with serving(create_app(model), max_connections=2) as address:
        host, port = address.split(":")
        idle = socket.create_connection((host, int(port)), timeout=10)  # open, says nothing
        try:
            time.sleep(0.2)
            busy = httpx.post(f"http://{address}/separate", content=data, timeout=30)
            assert busy.status_code == 503
        finally:
            idle.close()
        deadline = time.monotonic() + 10
        while (status := httpx.post(f"http://{address}/separate", content=data, timeout=30).status_code) == 503:
            assert time.monotonic() < deadline, "the closed connection still counts"
            time.sleep(0.1)
        assert status == 200


def ws_closing(ws) -> tuple[list, int, str]:
    """Every message until the server closes: ``(messages, close code, close reason)``."""
    messages = []
    with pytest.raises(ConnectionClosed) as closed:
        for _ in range(100):
            message = ws.recv(timeout=20)
            messages.append(json.loads(message) if isinstance(message, str) else message)
    return messages, closed.value.rcvd.code, closed.value.rcvd.reason


def test_idle_streams_are_closed_and_free_their_slot(hardened):
    started = time.monotonic()
    with connect(f"ws://{hardened}/stream") as silent, connect(f"ws://{hardened}/stream") as paused:
        paused.send(json.dumps({"sample_rate": 8000}))
        assert json.loads(paused.recv(timeout=10))["type"] == "ready"
        for ws in (silent, paused):  # before and after the header
            messages, code, reason = ws_closing(ws)
            assert code == 1008 and reason == messages[-1]["message"] == "idle: nothing received for 1 s"
            assert messages[-1]["type"] == "error"
    assert time.monotonic() - started < IDLE_TIMEOUT + 10
    out, done = stream_over_ws(hardened, np.zeros(400, dtype=np.float32))  # max_streams=2: both freed
    assert done["samples"] == 400 and out.shape == (2, 400)


class FaultyStreamModel(torch.nn.Module):
    """A causal model whose stream fails on its first block (a server fault, not the client's)."""

    name, sample_rate, n_src, causal = "faulty", 8000, 2, True

    def stream(self):
        def process(block):
            raise RuntimeError("boom")

        return type("Session", (), {"latency_samples": 0, "process": staticmethod(process)})()


def test_a_server_fault_in_a_stream_is_an_error_frame_and_1011():
    with serving(create_app(FaultyStreamModel())) as address:
        with connect(f"ws://{address}/stream") as ws:
            ws.send(json.dumps({"sample_rate": 8000}))
            assert json.loads(ws.recv(timeout=10))["type"] == "ready"
            ws.send(np.zeros(80, "<f4").tobytes())
            messages, code, reason = ws_closing(ws)
        assert code == 1011 and messages == [{"type": "error", "message": reason}] and "internal error" in reason
        assert httpx.get(f"http://{address}/health", timeout=10).json()["busy"]["streams"] == 0


def test_a_stream_may_not_stay_open_past_twice_the_audio_limit(model):
    """Empty blocks every 0.3 s keep a stream from being idle but not from its end: after 2 × 1 s."""
    with serving(create_app(model, max_seconds=1.0, idle_timeout=1.0)) as address:
        with connect(f"ws://{address}/stream") as ws:
            started = time.monotonic()
            ws.send(json.dumps({"sample_rate": 8000}))
            assert json.loads(ws.recv(timeout=10))["type"] == "ready"
            answers = []
            with pytest.raises(ConnectionClosed) as closed:
                for _ in range(50):  # 15 s at most
                    ws.send(b"")
                    answers.append(ws.recv(timeout=10))
                    time.sleep(0.3)
        assert 2.0 <= time.monotonic() - started <= 8.0
        reason = "open for 2 × the 1 s audio limit, the longest a stream may last"
        assert closed.value.rcvd.code == 1008 and closed.value.rcvd.reason == reason
        assert set(answers[:-1]) == {b""}
        assert answers[-1] == b"" or json.loads(answers[-1]) == {"type": "error", "message": reason}


@pytest.mark.parametrize("header,words", [
    ({"sample_rate": 8000, "format": ["float32"]}, "format ['float32']: use one of ['float32', 'int16']"),
    ({"sample_rate": "8000"}, "sample_rate '8000': this stream takes 8000 Hz"),
    ({"sample_rate": True}, "sample_rate True"),
    ({"format": "float32"}, "sample_rate None"),
    ({"sample_rate": 8000, "fromat": "int16"}, "unknown header key 'fromat'"),
    ([8000, "float32"], "(got a JSON list)"),
    ("[" * 100_000, "(it is not JSON)"),
])
def test_malformed_stream_headers_get_an_error_frame_and_1003(hardened, header, words):
    with connect(f"ws://{hardened}/stream") as ws:
        ws.send(header if isinstance(header, str) else json.dumps(header))
        messages, code, reason = ws_closing(ws)
    assert messages == [{"type": "error", "message": reason}] and code == 1003
    assert words in reason


@pytest.mark.parametrize("empty_block_first", [False, True])
def test_end_at_once_gives_an_empty_stream(hardened, empty_block_first):
    with connect(f"ws://{hardened}/stream") as ws:
        ws.send(json.dumps({"sample_rate": 8000, "format": "int16"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "ready"
        if empty_block_first:  # an empty block: an empty answer
            ws.send(b"")
            assert ws.recv(timeout=10) == b""
        ws.send(json.dumps({"type": "end"}))
        messages, code, _ = ws_closing(ws)
    assert messages == [b"", {"type": "done", "samples": 0}] and code == 1000


def test_malformed_stream_messages_get_an_error_frame(hardened):
    cases = [(json.dumps({"type": "pause"}), 1003, 'send binary samples or the text {"type": "end"}'),
             ("not json", 1003, 'send binary samples or the text {"type": "end"}'),
             (np.array([0.0, np.inf], "<f4").tobytes(), 1003, "NaN or Inf samples"),
             (b"\x00" * 7, 1003, "7 bytes is not a whole number of float32 samples")]
    for message, expected_code, words in cases:
        with connect(f"ws://{hardened}/stream") as ws:
            ws.send(json.dumps({"sample_rate": 8000}))
            assert json.loads(ws.recv(timeout=10))["type"] == "ready"
            ws.send(message)
            messages, code, reason = ws_closing(ws)
        assert code == expected_code and words in reason and messages[-1] == {"type": "error", "message": reason}


def test_oversize_frames_are_closed_by_the_protocol(model):
    """Under ``audiomask serve``'s configuration a frame over ``max_bytes`` never reaches the
    app: the WebSocket layer closes with 1009."""
    with serving(create_app(model, max_bytes=1000)) as address:
        with connect(f"ws://{address}/stream", max_size=None) as ws:
            ws.send(json.dumps({"sample_rate": 8000}))
            assert json.loads(ws.recv(timeout=10))["type"] == "ready"
            ws.send(b"\x00" * 1004)
            _, code, reason = ws_closing(ws)
        assert code == 1009 and "exceeds limit of 1000 bytes" in reason
        assert stream_over_ws(address, np.zeros(80, dtype=np.float32))[1]["samples"] == 80


def wav_with_rate(rate: int, frames: int = 800) -> bytes:
    """A PCM-16 WAV whose header claims ``rate`` (the data is ``frames`` zeros)."""
    data = bytearray(wav_bytes(np.zeros(frames, dtype=np.float32), 8000, "PCM_16"))
    data[24:28], data[28:32] = struct.pack("<I", rate), struct.pack("<I", rate * 2)
    return bytes(data)


@pytest.mark.parametrize("data,words", [
    (wav_with_rate(2_000_000_000), "the header declares 2000000000 Hz; this server takes 1000 Hz to 768000 Hz"),
    (wav_with_rate(44100, frames=1), "shorter than one sample at 8000 Hz"),
    (wav_at_model_rate()[:3000], "truncated"),
], ids=["2 GHz", "1 sample at 44.1 kHz", "truncated"])
def test_malformed_audio_headers_get_400(hardened, data, words):
    response = httpx.post(f"http://{hardened}/separate", content=data, timeout=30)
    assert response.status_code == 400 and words in response.json()["detail"]
    assert httpx.get(f"http://{hardened}/health", timeout=10).status_code == 200


def test_raw_audio_is_sniffed_whatever_the_content_type(hardened, model):
    data = wav_at_model_rate()
    expected = audiomask.separate(model, torch.from_numpy(sf.read(io.BytesIO(data), dtype="float32")[0]), 8000)
    for content_type in ("application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x"):
        response = httpx.post(f"http://{hardened}/separate", content=data, headers={"content-type": content_type},
                              timeout=30)
        assert response.status_code == 200, (content_type, response.text)
        assert np.abs(unzip_sources(response)[1] - expected.numpy()).max() <= 1e-5


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl")
def test_curl_data_binary_works(hardened, tmp_path):
    (tmp_path / "mix.wav").write_bytes(wav_at_model_rate())
    result = subprocess.run(["curl", "-sS", "--data-binary", f"@{tmp_path / 'mix.wav'}", "-o",
                             str(tmp_path / "out.zip"), "-w", "%{http_code}", f"http://{hardened}/separate"],
                            capture_output=True, text=True, timeout=60)
    assert result.stdout == "200", result.stderr
    with zipfile.ZipFile(tmp_path / "out.zip") as archive:
        assert archive.namelist() == ["upload_s1.wav", "upload_s2.wav"]


def test_audio_sniffing():
    assert all(looks_like_audio(m + b"....") for m in (b"RIFF", b"RF64", b"FORM", b"fLaC", b"OggS", b"ID3"))
    assert looks_like_audio(b"\xff\xfb\x90\x00") and not looks_like_audio(b"\xff\x00")
    assert not looks_like_audio(b"file=RIFF") and not looks_like_audio(b"--boundary\r\n") and not looks_like_audio(b"")


# -- fuzz ---------------------------------------------------------------------------------------------
def random_json(rng: random.Random, depth: int = 0):
    kinds = ["int", "float", "str", "bool", "null"] + (["list", "dict"] if depth < 3 else [])
    kind = rng.choice(kinds)
    if kind == "int":
        return rng.choice([8000, 16000, 0, -1, 2**63, rng.randint(-10**6, 10**6)])
    if kind == "float":
        return rng.choice([8000.0, 0.5, 1e308, -0.0])
    if kind == "str":
        return rng.choice(["float32", "int16", "end", "", "\u00e9\u4e2d", "x" * 200])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "list":
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    keys = ["sample_rate", "format", "type", "x"]
    return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def random_ws_message(rng: random.Random):
    choice = rng.choice([0, 1, 1, 1, 2, 3, 4, 5, 6])
    if choice == 0:
        return bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, 3, 4, 160, 2001])))
    if choice == 1:
        return np.array([rng.uniform(-2, 2) for _ in range(rng.randint(1, 200))], "<f4").tobytes()
    if choice == 2:
        return json.dumps(random_json(rng))
    if choice == 3:
        return json.dumps({"sample_rate": random_json(rng), "format": random_json(rng)})
    if choice == 4:
        return json.dumps({"type": "end"})
    if choice == 5:
        return json.dumps({"sample_rate": 8000, "format": rng.choice(["float32", "int16"])})
    return "".join(chr(rng.randint(1, 0x2FF)) for _ in range(rng.randint(0, 50)))


def test_fuzz_websocket_protocol(hardened):
    """100 connections, each 1-5 random messages (bytes, samples, JSON of every type, headers,
    ends): every message gets an answer while the stream is open, every text answer is
    ready/error/done JSON, an error is followed by the server's close with that reason and 1003
    or 1008, and the server streams normally at the end."""
    rng = random.Random(24)
    outcomes: dict[int | str, int] = {}
    for case in range(100):
        messages = [random_ws_message(rng) for _ in range(rng.randint(1, 5))]
        if rng.random() < 0.5:  # half the streams get past the header
            messages.insert(0, json.dumps({"sample_rate": 8000, "format": rng.choice(["float32", "int16"])}))
        answers, outcome, reason = [], "open", ""
        with connect(f"ws://{hardened}/stream", max_size=None, close_timeout=5) as ws:
            try:
                for message in messages:
                    ws.send(message)
                    try:
                        answers.append(ws.recv(timeout=20))  # every message is owed an answer
                    except TimeoutError:
                        pytest.fail(f"case {case}: no answer to {message!r:.100}")
                    if message == json.dumps({"type": "end"}):
                        break  # the protocol ends there
                while True:  # the rest (after an end: the done message), until the server closes
                    answers.append(ws.recv(timeout=0.3))
            except TimeoutError:
                pass  # still open: waiting for more samples
            except ConnectionClosed as e:
                assert e.rcvd is not None, f"case {case}: closed without a close frame"
                outcome, reason = e.rcvd.code, e.rcvd.reason
        texts = [json.loads(a) for a in answers if isinstance(a, str)]
        assert all(t["type"] in ("ready", "error", "done") for t in texts), (case, texts)
        errors = [t for t in texts if t["type"] == "error"]
        if errors:
            assert outcome in (1003, 1008) and errors == [{"type": "error", "message": reason}], (case, texts)
        else:
            assert outcome == (1000 if texts and texts[-1]["type"] == "done" else "open"), (case, outcome, texts)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert outcomes.get(1003, 0) > 30 and outcomes.get(1000, 0) >= 3 and outcomes.get("open", 0) >= 3, outcomes
    out, done = stream_over_ws(hardened, np.zeros(800, dtype=np.float32))
    assert done["samples"] == 800 and out.shape == (2, 800)


CONTENT_TYPES = ["audio/wav", "application/x-www-form-urlencoded", "multipart/form-data",
                 "multipart/form-data; boundary=", "multipart/form-data; boundary=zz", "text/plain", "",
                 "\u00e9/\u00e9"]


def random_body(rng: random.Random, wav: bytes) -> bytes:
    choice = rng.randrange(6)
    if choice == 5:
        return wav
    if choice == 0:
        return bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, 12, 44, 1000])))
    if choice == 1:  # a WAV with up to 4 bytes of its header replaced
        data = bytearray(wav)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(44)] = rng.getrandbits(8)
        return bytes(data)
    if choice == 2:
        return wav[: rng.randrange(len(wav))]
    if choice == 3:
        return b"--zz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n" + \
            wav[: rng.randrange(len(wav))] + rng.choice([b"\r\n--zz--\r\n", b"", b"\r\n--zz"])
    return b"RIFF" + bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 4, 40, 400])))


def test_fuzz_http_endpoint(hardened):
    """100 requests with random bodies (random bytes, WAVs with damaged headers, truncations,
    broken multipart) and random content types, lengths and queries, on raw sockets: every one
    is answered 2xx or 4xx, and the server separates normally at the end."""
    rng = random.Random(26)
    wav = wav_at_model_rate(0.1)
    statuses: dict[int | None, int] = {}
    for case in range(100):
        body = random_body(rng, wav)
        headers = {"Content-Type": rng.choice(CONTENT_TYPES)}
        length = rng.choice(["exact"] * 6 + ["short", "junk", "negative", "none"])
        if length == "exact":
            headers["Content-Length"] = str(len(body))
        elif length == "short":
            headers["Content-Length"] = str(max(0, len(body) - 5))
        elif length != "none":
            headers["Content-Length"] = {"junk": "12x", "negative": "-1"}[length]
        query = rng.choice(["", "", "?downmix=true", "?downmix=maybe"])
        request = http_request(body, headers).replace(b"/separate", b"/separate" + query.encode(), 1)
        status, response = raw_exchange(hardened, request)
        assert status is not None and 200 <= status < 500, (case, response[:300])
        statuses[status] = statuses.get(status, 0) + 1
    assert statuses.get(200, 0) >= 5 and statuses.get(400, 0) >= 30, statuses
    assert post(hardened, wav).status_code == 200


def test_slow_or_missing_request_headers_close_the_connection(hardened):
    """A client that sends its headers at 5 bytes/s, or nothing, is cut off after the read
    timeout (uvicorn alone would wait for ever), and a kept-alive connection still serves."""
    host, port = hardened.split(":")
    closed_after = {}

    def slow_headers(i: int) -> None:
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            start = time.monotonic()
            try:
                if i == 0:
                    sock.sendall(b"POST /separate HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                    for _ in range(100):  # 20 s at most
                        sock.sendall(b"X")
                        time.sleep(0.2)
                received = sock.recv(65536)  # b"": closed
            except (BrokenPipeError, ConnectionResetError):
                received = b""
            closed_after[i] = (received, time.monotonic() - start)

    threads = [threading.Thread(target=slow_headers, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    with httpx.Client(timeout=30) as client:  # one connection, kept alive past the deadline
        for _ in range(3):
            assert client.get(f"http://{hardened}/health").status_code == 200
            time.sleep(READ_TIMEOUT / 2)
    for thread in threads:
        thread.join(30)
    for received, seconds in closed_after.values():
        assert received == b"" and READ_TIMEOUT - 0.1 <= seconds <= READ_TIMEOUT + 5
