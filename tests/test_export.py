"""Export: ONNX (run by onnxruntime) and TorchScript files equal the PyTorch models within 1e-4 —
offline at several lengths and batch sizes, streaming block by block against ``model.stream()``
— plus the metadata a runtime loop needs, and the exports that are refused, with their reasons.

Each export runs once per module (the fixtures); inputs are real speech."""

from __future__ import annotations

import json
import logging

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

import audiomask
from audiomask.audio import resample
from audiomask.cli import main
from audiomask.export import ExportError, OnnxStreamer, TorchScriptStreamer, export_model, read_metadata
from audiomask.filterbanks import RealISTFT, RealSTFT
from audiomask.export.graphs import adaptive_avg_pool1d, tracing_mode
from audiomask.filterbanks import ISTFTDecoder, STFTEncoder

TOL = 1e-4


@pytest.fixture(scope="module")
def speech(speech_files) -> dict[int, torch.Tensor]:
    """Two real utterances, 3 s, at 16 kHz and 8 kHz: ``{rate: [2, T]}`` (peak 0.5)."""
    wavs = []
    for path in speech_files[:2]:
        x, rate = sf.read(path, dtype="float32")
        wavs.append(torch.from_numpy(x[rate : 4 * rate]))
    x16 = torch.stack(wavs)
    x16 = 0.5 * x16 / x16.abs().amax(dim=1, keepdim=True)
    return {16000: x16, 8000: resample(x16, 16000, 8000)}


def mixture(speech, rate: int, length: int) -> torch.Tensor:
    return speech[rate][:, :length].sum(0)


def ort_session(path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def max_error(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max()) if a.size else 0.0


# -- exports, once each ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``exported(key)`` → (model, path): the export of one model, made on first use."""
    folder = tmp_path_factory.mktemp("export")
    made: dict[str, tuple] = {}

    def get(key: str):
        if key not in made:
            model, fmt, streaming = _MODELS[key]()
            path = folder / f"{key}.{'onnx' if fmt == 'onnx' else 'pt'}"
            export_model(model, path, fmt, streaming=streaming, block_ms=10, verify=False, optimize=False)
            made[key] = (model, path)
        return made[key]

    return get


def _seeded(name: str, preset: str, **overrides):
    torch.manual_seed(0)
    return audiomask.build(name, preset, **overrides).eval()


_MODELS = {
    "ctn": lambda: (audiomask.load("convtasnet-mini2mix"), "onnx", False),
    "ctn-causal": lambda: (audiomask.load("convtasnet-mini2mix-causal"), "onnx", False),
    "ctn-causal-stream": lambda: (audiomask.load("convtasnet-mini2mix-causal"), "onnx", True),
    "aec": lambda: (audiomask.load("d3net-aec-small"), "onnx", False),
    "aec-stream": lambda: (audiomask.load("d3net-aec-small"), "onnx", True),
    # small presets, random weights; one FFI iteration / one MossFormer2 layer keeps the export
    # quick while every layer type of the model is in the graph (the full presets: bench/export.py)
    "tiger": lambda: (_seeded("tiger", "small", n_iter=1), "onnx", False),
    "mossformer2": lambda: (_seeded("mossformer2", "small", n_layers=1), "onnx", False),
    "ctn-ts": lambda: (audiomask.load("convtasnet-mini2mix"), "torchscript", False),
    "ctn-causal-stream-ts": lambda: (audiomask.load("convtasnet-mini2mix-causal"), "torchscript", True),
}


# -- offline ---------------------------------------------------------------------------------------
@pytest.mark.slow  # exports and runs whole models through onnxruntime (tens of seconds each); CI runs it
@pytest.mark.parametrize("key", ["ctn", "ctn-causal", "tiger", "mossformer2"])
def test_offline_onnx_equals_pytorch_at_any_length(exported, speech, key):
    model, path = exported(key)
    rate, session = model.sample_rate, ort_session(path)
    for batch, length in ((1, rate + 123), (2, 2 * rate + 5), (1, rate // 3 + 1)):
        mix = speech[rate][:batch, :length] if batch > 1 else mixture(speech, rate, length)[None]
        with torch.no_grad():
            ref = model(mix).numpy()
        out = session.run(None, {"mix": mix.numpy()})[0]
        assert max_error(out, ref) <= TOL, (key, batch, length)


@pytest.mark.slow  # exports and runs whole models through onnxruntime (tens of seconds each); CI runs it
def test_offline_aec_onnx_equals_pytorch(exported, speech):
    model, path = exported("aec")
    gen, session = torch.Generator().manual_seed(0), ort_session(path)
    for length in (16000, 16000 + 77):
        far = speech[16000][0, :length]
        echo = F.conv1d(far.view(1, 1, -1), 0.3 * torch.randn(1, 1, 64, generator=gen), padding=63)[0, 0, :length]
        mic = speech[16000][1, :length] + echo
        with torch.no_grad():
            ref = model(mic[None], far[None]).numpy()
        out = session.run(None, {"mic": mic[None].numpy(), "far": far[None].numpy()})[0]
        assert out.shape == (1, 1, length)
        assert max_error(out[:, 0], ref) <= TOL


def test_offline_metadata(exported):
    model, path = exported("ctn")
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["kind"] == "offline" and meta["model"] == "convtasnet"
    assert int(meta["sample_rate"]) == 8000 and int(meta["n_src"]) == 2
    assert json.loads(meta["config"]) == json.loads(json.dumps(model.config.__dict__, sort_keys=True))
    assert read_metadata(path) == meta


# -- streaming -------------------------------------------------------------------------------------
def stream_pytorch(session, blocks):
    with torch.no_grad():
        return [session.process(*b) for b in blocks]


@pytest.mark.slow  # exports and runs whole models through onnxruntime (tens of seconds each); CI runs it
@pytest.mark.parametrize("length", [8000, 8000 + 37])
def test_streaming_onnx_equals_pytorch_stream_block_by_block(exported, speech, length):
    model, path = exported("ctn-causal-stream")
    x = mixture(speech, 8000, length)
    full = length - length % 80
    blocks = [(x[i : i + 80],) for i in range(0, full, 80)]  # 10 ms
    session, streamer = model.stream(), OnnxStreamer(path, threads=1)
    for (block,), ref in zip(blocks, stream_pytorch(session, blocks)):
        assert max_error(streamer.process(block.numpy()), ref.numpy()) <= TOL
    # a last, shorter block waits in the streamer for the flush; together they give the same
    rest = np.concatenate([streamer.process(x[full:].numpy()), streamer.flush()], axis=1)
    with torch.no_grad():
        ref_rest = torch.cat([session.process(x[full:]), session.flush()], dim=-1)
    assert max_error(rest, ref_rest.numpy()) <= TOL
    # and the whole stream is the offline pass
    streamer.reset()
    whole = np.concatenate([streamer.process(x[:3001].numpy()), streamer.process(x[3001:].numpy()),
                            streamer.flush()], axis=1)
    with torch.no_grad():
        assert max_error(whole, model(x).numpy()) <= TOL


def test_streaming_aec_onnx_equals_pytorch_stream(exported, speech):
    model, path = exported("aec-stream")
    far, near = speech[16000][0, :16000], speech[16000][1, :16000]
    mic = near + 0.5 * torch.roll(far, 40)
    blocks = [(mic[i : i + 160], far[i : i + 160]) for i in range(0, 16000, 160)]
    session, streamer = model.stream(), OnnxStreamer(path, threads=1)
    for (m, f), ref in zip(blocks, stream_pytorch(session, blocks)):
        assert max_error(streamer.process(m.numpy(), f.numpy())[0], ref.numpy()) <= TOL
    assert max_error(streamer.flush()[0], session.flush().numpy()) <= TOL  # 16000 = 100 hops: exact
    # a length that is not a multiple of the hop: the stream ends with silence, i.e. it is the
    # offline pass over the signal padded with zeros to the next hop
    streamer.reset()
    n = 16000 - 77
    out = np.concatenate([streamer.process(mic[:n].numpy(), far[:n].numpy()), streamer.flush()], axis=1)
    with torch.no_grad():
        ref = model(F.pad(mic[:n], (0, 77)), F.pad(far[:n], (0, 77)))[:n]
    assert max_error(out[0], ref.numpy()) <= TOL


def test_streaming_metadata_is_enough_for_a_runtime_loop(exported, speech):
    """A loop written from the file's metadata alone (no audiomask code) gives the stream."""
    model, path = exported("ctn-causal-stream")
    session = ort_session(path)
    meta = session.get_modelmeta().custom_metadata_map
    block, discard = int(meta["block_size"]), int(meta["discard_samples"])
    shapes, dtypes = json.loads(meta["state_shapes"]), json.loads(meta["state_dtypes"])
    names = [i.name for i in session.get_inputs()]
    assert names == ["block"] + [f"state_{i}" for i in range(len(shapes))]
    assert [o.name for o in session.get_outputs()] == ["out"] + [f"state_out_{i}" for i in range(len(shapes))]
    assert [list(i.shape) for i in session.get_inputs()[1:]] == shapes
    assert block == 80 and int(meta["n_src"]) == 2 and int(meta["sample_rate"]) == 8000
    state = [np.zeros(s, dtype=d) for s, d in zip(shapes, dtypes)]
    x = mixture(speech, 8000, 4000)
    padded = np.pad(x.numpy(), (0, 2 * block - len(x) % block))  # silence to end the signal
    outs = []
    for i in range(0, len(padded), block):
        out, *state = session.run(None, dict(zip(names, [padded[None, i : i + block]] + state)))
        outs.append(out[0])
    got = np.concatenate(outs, axis=1)[:, discard : discard + len(x)]
    with torch.no_grad():
        assert max_error(got, model(x).numpy()) <= TOL


# -- TorchScript -----------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:.*torch.jit.load:DeprecationWarning")
def test_torchscript_offline_round_trip(exported, speech):
    model, path = exported("ctn-ts")
    module = torch.jit.load(str(path))  # as a user would; PyTorch marks TorchScript deprecated
    assert read_metadata(path)["kind"] == "offline"
    for length in (8000, 12345):
        mix = mixture(speech, 8000, length)[None]
        with torch.no_grad():
            assert max_error(module(mix), model(mix)) <= TOL


def test_torchscript_streaming_round_trip(exported, speech):
    model, path = exported("ctn-causal-stream-ts")
    x = mixture(speech, 8000, 6000)
    streamer = TorchScriptStreamer(path)
    out = np.concatenate([streamer.process(x[:2500].numpy()), streamer.process(x[2500:].numpy()),
                          streamer.flush()], axis=1)
    with torch.no_grad():
        assert max_error(out, model(x).numpy()) <= TOL


def test_export_verifies_the_file_against_pytorch(tmp_path):
    model = _seeded("convtasnet", "tiny", causal=True, norm="cLN")
    meta = export_model(model, tmp_path / "s.pt", "torchscript", streaming=True, block_ms=5)
    assert float(meta["max_abs_error"]) <= TOL and meta["block_size"] == "40"


# -- what cannot be exported ---------------------------------------------------------------------
@pytest.mark.parametrize("name,preset", [("tiger", "tiny"), ("mossformer2", "small"), ("convtasnet", "tiny")])
def test_streaming_export_of_non_causal_models_is_refused(tmp_path, name, preset):
    with pytest.raises(ExportError, match="not causal: every output sample depends on the whole input"):
        export_model(audiomask.build(name, preset), tmp_path / "x.onnx", streaming=True)
    assert not (tmp_path / "x.onnx").exists()


def test_streaming_export_refusals_name_the_reason(tmp_path):
    with pytest.raises(ExportError, match="without a stateful streaming step"):
        export_model(audiomask.build("mossformer2", "small-causal"), tmp_path / "x.onnx", streaming=True)
    causal = audiomask.load("convtasnet-mini2mix-causal")
    with pytest.raises(ExportError, match=r"multiple of the encoder hop \(8 samples"):
        export_model(causal, tmp_path / "x.onnx", streaming=True, block_ms=10.5)
    with pytest.raises(ExportError, match="multiple of the STFT hop"):
        export_model(audiomask.load("d3net-aec-small"), tmp_path / "x.onnx", streaming=True, block_ms=5)
    valid = audiomask.build("convtasnet", "small-causal", framing="valid")
    with pytest.raises(ExportError, match="centred framing"):
        export_model(valid, tmp_path / "x.onnx", streaming=True)
    assert list(tmp_path.iterdir()) == []


def test_cli_export_error_and_help(tmp_path, capsys):
    code = main(["export", "tiger:tiny", "--streaming", "--out", str(tmp_path / "t.onnx")])
    err = capsys.readouterr().err
    assert code == 2 and "audiomask: error: tiger is not causal" in err
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    help_text = capsys.readouterr().out
    assert "not exportable" in help_text and "TIGER" in help_text


def test_cli_export_torchscript(tmp_path, capsys):
    out = tmp_path / "ctn.pt"
    assert main(["export", "convtasnet:tiny", "--format", "torchscript", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert str(out) in printed and "verified: max |torchscript - PyTorch|" in printed
    assert read_metadata(out)["model"] == "convtasnet"
    # issue 26 item 4: each stage is announced on stderr as it begins (an export can take minutes)
    stages = [line for line in captured.err.splitlines() if line.startswith("[")]
    assert [s.split("] ")[1].split(" (")[0] for s in stages] == ["tracing the graph",
                                                                 "verifying the file against the PyTorch model"]
    for bad in ("0", "-5", "nan", "1e9"):
        assert main(["export", "convtasnet:tiny", "--streaming", "--block-ms", bad, "--out", str(tmp_path / "b.onnx")]) == 2
        assert "--block-ms must be a number of milliseconds" in capsys.readouterr().err


def test_onnx_export_silences_other_loggers_but_not_its_stage_lines(caplog):
    """torch.onnx's logging is switched off around the ONNX conversion; the stage lines, logged by
    `audiomask export`, still get through."""
    from audiomask.export.core import _quiet_loggers

    stage = logging.getLogger("audiomask.cli.export")
    with caplog.at_level(logging.INFO), _quiet_loggers(stage.info) as say:
        logging.getLogger("torch.onnx").warning("torch's own progress")
        say("converting to ONNX")
    assert [r.getMessage() for r in caplog.records] == ["converting to ONNX"]


# -- the pieces ------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_fft,hop,window,pad_mode",
                         [(640, 160, "hann", "reflect"), (320, 160, "sqrt_hann", "constant")])
def test_real_stft_equals_torch_stft(n_fft, hop, window, pad_mode):
    enc = STFTEncoder(n_fft, hop, window=window, pad_mode=pad_mode)
    dec = ISTFTDecoder.like(enc)
    x = 0.3 * torch.randn(2, 4001, generator=torch.Generator().manual_seed(0))
    spec = enc(x)
    ri = RealSTFT(enc)(x)
    scale = spec.abs().max().item()
    assert (torch.view_as_real(spec).permute(0, 3, 1, 2) - ri).abs().max().item() <= 1e-6 * scale
    assert (RealISTFT(dec)(ri, 4001) - dec(spec, 4001)).abs().max().item() <= 1e-5


def test_traceable_adaptive_pool_equals_pytorch():
    for length, size in ((101, 7), (64, 4), (13, 13), (9, 1), (1000, 63)):
        x = torch.randn(3, 5, length)
        assert torch.allclose(adaptive_avg_pool1d(x, size), F.adaptive_avg_pool1d(x, size), atol=1e-6)


def test_tracing_mode_restores_what_it_switches():
    from audiomask import accel
    from audiomask.nn import multiscale

    before = accel.mode(), multiscale.F
    with tracing_mode():
        assert accel.mode() == "reference" and multiscale.F is not F
    assert (accel.mode(), multiscale.F) == before
