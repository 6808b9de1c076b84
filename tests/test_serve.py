"""The HTTP/WebSocket server, driven over loopback by real clients (httpx, websockets) against a
uvicorn server in a thread: valid, corrupt, truncated, oversized, too long, multi-channel and
wrong-rate audio; the numbers equal :func:`audiomask.separate`; concurrency is bounded; no
temporary file appears."""

from __future__ import annotations

import contextlib
import io
import json
import os
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
from audiomask.serve.audio_bytes import decode_audio

QUICKSTART = Path(__file__).resolve().parents[1] / "egs" / "quickstart" / "mix.wav"


@contextlib.contextmanager
def serving(app):
    """Run ``app`` with uvicorn on a free loopback port in a thread; yield its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
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
