"""What streams accept: NaN/Inf blocks never poison the state, numpy and integer PCM blocks,
``flush()`` first, the sample-rate check, and the ``stream`` command's argument checks."""

import numpy as np
import pytest
import torch

import audiomask
from audiomask.streaming import Stream, simulate


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return audiomask.build("convtasnet", "tiny", causal=True, norm="cLN").eval()


@pytest.fixture(scope="module")
def aec_model():
    torch.manual_seed(0)
    return audiomask.build("d3net-aec", "small").eval()


def run(session, blocks):
    outs = [session.process(b) for b in blocks]
    outs.append(session.flush())
    return torch.cat(outs, dim=-1)


def blocks_of(x: torch.Tensor, size: int) -> list[torch.Tensor]:
    return list(x.split(size, dim=-1))


# -- 24.5: a NaN never poisons a stream ---------------------------------------------------------
def test_a_refused_nan_block_leaves_the_stream_as_if_it_had_not_been_sent(model):
    torch.manual_seed(1)
    blocks = blocks_of(torch.randn(3000) * 0.3, 160)
    bad = torch.randn(160)
    bad[37] = float("nan")
    bad[90] = float("inf")
    session = model.stream()
    outs = []
    for i, block in enumerate(blocks):
        if i == 5:
            with pytest.raises(ValueError, match=r"block: 2 of 160 samples are NaN or Inf; the block was refused"):
                session.process(bad)
        outs.append(session.process(block))
    outs.append(session.flush())
    got = torch.cat(outs, dim=-1)
    want = run(model.stream(), blocks)
    assert torch.isfinite(got).all()
    assert torch.equal(got, want)
    assert session.received == 3000 and session.nonfinite_samples == 0


def test_zero_mode_streams_the_block_with_its_nan_samples_zeroed(model):
    torch.manual_seed(2)
    blocks = blocks_of(torch.randn(3000) * 0.3, 160)
    poisoned = [b.clone() for b in blocks]
    poisoned[4][[0, 17, 159]] = torch.tensor([float("nan"), float("inf"), -float("inf")])
    zeroed = [b.clone() for b in blocks]
    zeroed[4][[0, 17, 159]] = 0.0
    session = model.stream(nonfinite="zero")
    got = run(session, poisoned)
    assert torch.isfinite(got).all()
    assert torch.equal(got, run(model.stream(), zeroed))
    assert session.nonfinite_samples == 3
    with pytest.raises(ValueError, match="nonfinite must be one of 'error', 'zero'"):
        model.stream(nonfinite="skip")


def test_aec_session_refuses_or_zeroes_nan_blocks(aec_model):
    torch.manual_seed(3)
    mic, far = torch.randn(2, 4000) * 0.3
    pairs = list(zip(blocks_of(mic, 320), blocks_of(far, 320)))
    ref = aec_model.stream()
    want = torch.cat([ref.process(m, f) for m, f in pairs] + [ref.flush()], dim=-1)

    session, outs = aec_model.stream(), []
    for i, (m, f) in enumerate(pairs):
        if i == 3:
            bad = f.clone()
            bad[5] = float("nan")
            with pytest.raises(ValueError, match="far-end block: 1 of 320 samples are NaN or Inf"):
                session.process(m, bad)
        outs.append(session.process(m, f))
    outs.append(session.flush())
    assert torch.equal(torch.cat(outs, dim=-1), want)

    zeroed = [(m.clone(), f.clone()) for m, f in pairs]
    poisoned = [(m.clone(), f.clone()) for m, f in pairs]
    zeroed[2][0][10] = 0.0
    poisoned[2][0][10] = float("nan")
    session = aec_model.stream(nonfinite="zero")
    got = torch.cat([session.process(m, f) for m, f in poisoned] + [session.flush()], dim=-1)
    ref = aec_model.stream()
    assert torch.equal(got, torch.cat([ref.process(m, f) for m, f in zeroed] + [ref.flush()], dim=-1))
    assert session.nonfinite_samples == 1 and torch.isfinite(got).all()


def test_stream_refuses_nan_at_push_or_zeroes_and_reports_it(model):
    torch.manual_seed(4)
    x = (torch.randn(1600) * 0.3).numpy()
    stream = Stream(model, block_size=80)
    bad = x[:80].copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="pushed samples: 1 of 80 samples are NaN or Inf"):
        stream.push(bad)
    assert len(stream.inbox) == 0  # nothing was queued

    stream = Stream(model, block_size=80, nonfinite="zero")
    poisoned = x.copy()
    poisoned[[100, 101, 900]] = [np.nan, np.inf, np.nan]
    for start in range(0, len(x), 80):
        stream.push(poisoned[start : start + 80])
        stream.process_available()
    got = stream.pull(len(stream.outbox))
    clean = x.copy()
    clean[[100, 101, 900]] = 0.0
    with torch.no_grad():
        want = model(torch.from_numpy(clean)).numpy()
    assert np.isfinite(got).all()
    assert np.abs(got - want[:, : got.shape[-1]]).max() <= 1e-5
    report = stream.report()
    assert report.nonfinite_samples == 3
    assert "non-finite input 3 samples zeroed" in str(report)


# -- 24.7: the session's API -----------------------------------------------------------------------
def test_flush_before_any_block_gives_empty_outputs(model, aec_model):
    assert model.stream().flush().shape == (2, 0)
    assert model.stream(batch=3).flush().shape == (3, 2, 0)
    assert aec_model.stream().flush().shape == (0,)
    assert aec_model.stream(return_all=True).flush().shape == (3, 0)
    assert aec_model.stream(batch=2).flush().shape == (2, 0)


@pytest.mark.parametrize("dtype,scale", [(np.int16, 2**15), (np.int32, 2**31), (np.int8, 2**7)])
def test_numpy_and_integer_pcm_blocks_are_scaled_to_unit_range(model, dtype, scale):
    torch.manual_seed(5)
    pcm = (torch.rand(2000) * 2 - 1) * 0.5 * scale
    pcm = pcm.round().numpy().astype(dtype)
    floats = torch.from_numpy(pcm.astype(np.float64) / scale).float()
    want = run(model.stream(), blocks_of(floats, 300))
    got_np = run(model.stream(), [pcm[i : i + 300] for i in range(0, 2000, 300)])
    got_torch = run(model.stream(), blocks_of(torch.from_numpy(pcm), 300))
    assert torch.equal(got_np, want) and torch.equal(got_torch, want)
    assert want.abs().max() > 1e-3  # not silence


def test_numpy_float_blocks_equal_torch_blocks(model):
    x = (np.random.default_rng(6).standard_normal(1000) * 0.3)  # float64, as numpy makes them
    got = run(model.stream(), [x[i : i + 128] for i in range(0, 1000, 128)])
    want = run(model.stream(), blocks_of(torch.from_numpy(x).float(), 128))
    assert torch.equal(got, want)


def test_wrong_blocks_give_one_line_errors(model):
    session = model.stream()
    cases = [([0.1, 0.2], TypeError, "block: expected a torch tensor or numpy array, got list"),
             (np.zeros(10, dtype=np.int64), TypeError, "numpy dtype int64 is not audio"),
             (torch.zeros(10, dtype=torch.bool), TypeError, "dtype torch.bool is not audio"),
             (torch.zeros(10, dtype=torch.complex64), TypeError, "is not audio"),
             (torch.zeros(2, 10), ValueError, r"expected blocks \[n\] or \[1, n\], got shape \(2, 10\)"),
             (torch.zeros(1, 1, 10), ValueError, "got shape"),
             (torch.tensor(0.5), ValueError, r"got shape \(\)")]
    for block, error, message in cases:
        with pytest.raises(error, match=message) as info:
            session.process(block)
        assert "\n" not in str(info.value)
    assert session.received == 0
    assert session.process(torch.zeros(100)).shape[0] == 2  # still usable


# -- 26.7: the sample rate ---------------------------------------------------------------------
def test_sessions_refuse_blocks_at_another_rate(model, aec_model):
    with pytest.raises(ValueError, match=r"blocks at 16000 Hz: convtasnet streams at 8000 Hz \(streams are not "
                                         r"resampled; resample the input to 8000 Hz first"):
        model.stream(sample_rate=16000)
    with pytest.raises(ValueError, match="blocks at 8000 Hz: d3net-aec streams at 16000 Hz"):
        aec_model.stream(sample_rate=8000)
    with pytest.raises(ValueError, match="blocks at 44100 Hz"):
        Stream(model, block_size=80, sample_rate=44100)
    with pytest.raises(ValueError, match="sample_rate must be a positive number"):
        model.stream(sample_rate=0)
    assert model.stream(sample_rate=8000).process(torch.zeros(100)).shape[0] == 2


# -- 26.4 and 24.6: the stream command -----------------------------------------------------------
def test_simulate_shows_progress_on_stderr(model, capsys):
    x = torch.randn(8000) * 0.3
    simulate(model, x, 80, progress=True)
    err = capsys.readouterr().err
    assert "streaming" in err and "100%" in err and "1.0/1.0 s audio" in err
    simulate(model, x, 80)
    assert capsys.readouterr().err == ""


@pytest.fixture(scope="module")
def causal_file(tmp_path_factory, model):
    path = tmp_path_factory.mktemp("stream") / "causal.safetensors"
    model.save(path)
    return path


@pytest.mark.parametrize("block_ms,message", [
    ("nan", "--block-ms must be a number of milliseconds in (0, 10000], got nan"),
    ("1e9", "--block-ms must be a number of milliseconds in (0, 10000], got 1e+09"),
    ("inf", "got inf"), ("0", "got 0"), ("-5", "got -5"),
    ("0.05", "--block-ms 0.05 rounds to 0 samples at 8000 Hz (one sample is 0.125 ms)")])
def test_stream_cli_refuses_bad_block_lengths_in_one_line(tmp_path, capsys, causal_file, block_ms, message):
    import soundfile as sf

    from audiomask.cli import main

    wav = tmp_path / "in.wav"
    sf.write(wav, np.zeros(800, dtype=np.float32), 8000)
    assert main(["stream", "--input", str(wav), "--model", str(causal_file), "--out", str(tmp_path / "o"),
                 "--block-ms", block_ms]) == 2
    err = capsys.readouterr().err
    assert err.startswith("audiomask: error: --block-ms") and message in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_stream_cli_resamples_the_file_and_shows_progress(tmp_path, capsys, causal_file):
    import soundfile as sf

    from audiomask.cli import main

    wav = tmp_path / "in.wav"
    sf.write(wav, (np.random.default_rng(0).standard_normal(16000) * 0.2).astype(np.float32), 16000)
    assert main(["stream", "--input", str(wav), "--model", str(causal_file), "--out", str(tmp_path / "o"),
                 "--threads", "1"]) == 0
    err = capsys.readouterr().err
    assert f"{wav}: 16000 Hz, resampled to the model's 8000 Hz for streaming and the sources back to 16000 Hz" in err
    assert "streaming" in err and "100%" in err and "1.0/1.0 s audio" in err
    info = sf.info(tmp_path / "o" / "in_s1.wav")
    assert (info.samplerate, info.frames) == (16000, 16000)
    assert main(["stream", "--input", str(wav), "--model", str(causal_file), "--out", str(tmp_path / "q"),
                 "--threads", "1", "--quiet"]) == 0
    assert "100%" not in capsys.readouterr().err
