"""TIGER: the authors' size and layout, shared iterations, look2hear weights, mask constraint,
lengths at 16 and 8 kHz, chunked inference, and learning on real speech."""

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import audiomask
from audiomask.interop import convert
from audiomask.interop.tiger import audiomask_key, look2hear_key
from audiomask.maskers.tiger import band_widths
from audiomask.models.checkpoint import CheckpointError, load_model
from audiomask.models.tiger import TIGER
from audiomask.streaming import separate_chunked

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "tiger_look2hear.keys.txt"
AUTHORS_PARAMS = 821_932


def reference_keys() -> dict[str, tuple[int, ...]]:
    """``{name: shape}`` of every entry of the authors' state_dict (shared/reference)."""
    if not REFERENCE.is_file():
        pytest.skip(f"{REFERENCE} not found")
    keys = {}
    for line in REFERENCE.read_text().splitlines():
        m = re.match(r"^(P|Pf|B) (\S+) \(([\d, ]*)\) float32$", line)
        if m:
            keys[m.group(2)] = tuple(int(s) for s in m.group(3).replace(" ", "").split(",") if s)
    return keys


def reference_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with exactly the reference keys and shapes; norm gains near 1, PReLU
    slopes near 0.25, everything else small, so that 8 iterations stay well scaled."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in reference_keys().items():
        value = torch.randn(shape, generator=gen) * 0.1
        if name.endswith(("norm.weight", "norm.gamma", "_path.2.gamma")) or re.match(r"^BN\.\d+\.0\.w", name):
            value += 1.0
        elif name.endswith("act.weight") or re.match(r"^(mask\.\d+\.0|separator\.concat_block\.1)\.w", name):
            value += 0.25
        state[name] = value
    return state


# -- the authors' forward pass, written out functionally over their state_dict names ---------

def _conv_norm(sd, p, x, stride=1, groups=1, act=False):
    w = sd[p + "conv.weight"]
    y = F.conv1d(x, w, sd.get(p + "conv.bias"), stride=stride, padding=(w.shape[-1] - 1) // 2, groups=groups)
    y = F.group_norm(y, 1, sd[p + "norm.weight"], sd[p + "norm.bias"], eps=1e-8)
    return F.prelu(y, sd[p + "act.weight"]) if act else y


def _injection(sd, p, x_local, x_global):
    c, length = x_local.shape[1], x_local.shape[-1]
    local = _conv_norm(sd, p + "local_embedding.", x_local, groups=c)
    gate = torch.sigmoid(_conv_norm(sd, p + "global_act.", x_global, groups=c))
    glob = _conv_norm(sd, p + "global_embedding.", x_global, groups=c)
    up = lambda t: F.interpolate(t, size=length, mode="nearest")  # noqa: E731
    return local * up(gate) + up(glob)


def _uconv(sd, p, x, depth=5):
    first = _conv_norm(sd, p + "proj_1x1.", x, act=True)
    c = first.shape[1]
    levels = [_conv_norm(sd, p + "spp_dw.0.", first, groups=c)]
    for k in range(1, depth):
        levels.append(_conv_norm(sd, f"{p}spp_dw.{k}.", levels[-1], stride=2, groups=c))
    g = torch.zeros_like(levels[-1])
    for level in levels:
        g = g + F.adaptive_avg_pool1d(level, levels[-1].shape[-1])
    g = F.group_norm(F.conv1d(g, sd[p + "globalatt.fc1.conv.weight"]), 1, sd[p + "globalatt.fc1.norm.weight"],
                     sd[p + "globalatt.fc1.norm.bias"], eps=1e-8)
    g = F.conv1d(g, sd[p + "globalatt.dwconv.weight"], sd[p + "globalatt.dwconv.bias"], padding=2, groups=c)
    g = F.relu(g)
    g = F.group_norm(F.conv1d(g, sd[p + "globalatt.fc2.conv.weight"]), 1, sd[p + "globalatt.fc2.norm.weight"],
                     sd[p + "globalatt.fc2.norm.bias"], eps=1e-8)
    fused = [_injection(sd, f"{p}loc_glo_fus.{i}.", levels[i], g) for i in range(depth)]
    expanded = None
    for i in range(depth - 2, -1, -1):
        coarse = fused[i - 1] if i == depth - 2 else expanded  # sic: level i-1 first, as the authors
        expanded = _injection(sd, f"{p}last_layer.{i}.", fused[i], coarse)
    return F.conv1d(expanded, sd[p + "res_conv.weight"], sd[p + "res_conv.bias"]) + x


def _ln4d(sd, p, x):
    mu, var = x.mean(1, keepdim=True), x.var(1, unbiased=False, keepdim=True)
    return (x - mu) / torch.sqrt(var + 1e-5) * sd[p + "gamma"] + sd[p + "beta"]


def _conv_act_ln4d(sd, p, x):
    y = F.prelu(F.conv2d(x, sd[p + "conv.weight"], sd[p + "conv.bias"]), sd[p + "act.weight"])
    return _ln4d(sd, p + "norm.", y)


def _mhsa_dim4(sd, p, x, n_head=4):
    """MultiHeadSelfAttention2D(dim=4): attention over the last axis of x [B, C, T, F]."""
    x = x.transpose(-2, -1)
    b, _, t, f = x.shape
    q = torch.cat([_conv_act_ln4d(sd, f"{p}Queries.{h}.", x) for h in range(n_head)], 0)
    k = torch.cat([_conv_act_ln4d(sd, f"{p}Keys.{h}.", x) for h in range(n_head)], 0)
    v = torch.cat([_conv_act_ln4d(sd, f"{p}Values.{h}.", x) for h in range(n_head)], 0)
    q, k, v = q.transpose(1, 2).flatten(2), k.transpose(1, 2).flatten(2), v.transpose(1, 2)
    shape = v.shape
    attn = F.softmax(torch.matmul(q, k.transpose(1, 2)) / q.shape[-1] ** 0.5, dim=2)
    v = torch.matmul(attn, v.flatten(2)).reshape(shape).transpose(1, 2)
    e = v.shape[1]
    out = v.view(n_head, b, e, t, f).transpose(0, 1).contiguous().view(b, n_head * e, t, f)
    return (_conv_act_ln4d(sd, p + "attn_concat_proj.", out) + x).transpose(-2, -1)


def _ffi(sd, x):
    b, n, nband, t = x.shape
    y = _uconv(sd, "separator.freq_path.0.", x.permute(0, 3, 1, 2).reshape(b * t, n, nband))
    y = y.view(b, t, n, nband).permute(0, 2, 1, 3)  # B, N, T, nband
    y = _ln4d(sd, "separator.freq_path.2.", _mhsa_dim4(sd, "separator.freq_path.1.", y))
    x = y.permute(0, 1, 3, 2) + x
    y = _uconv(sd, "separator.frame_path.0.", x.permute(0, 2, 1, 3).reshape(b * nband, n, t))
    y = y.view(b, nband, n, t).permute(0, 2, 1, 3)  # B, N, nband, T
    return _ln4d(sd, "separator.frame_path.2.", _mhsa_dim4(sd, "separator.frame_path.1.", y)) + x


def look2hear_reference_forward(sd, wav, n_iter, n_src=2, win=640, hop=160):
    """look2hear ``TIGER.forward`` (eval mode) from its description: STFT, per-band GroupNorm +
    1x1 conv, ``Recurrent`` (shared FFI, concat_block from the 2nd iteration), per-band
    PReLU + grouped conv → a·sigmoid(b) masks forced to sum to 1 (real) / 0 (imag), iSTFT."""
    batch, length = wav.shape
    window, eps = torch.hann_window(win), torch.finfo(torch.float32).eps
    spec = torch.stft(wav, n_fft=win, hop_length=hop, window=window, return_complex=True)
    ri = torch.stack([spec.real, spec.imag], 1)
    nband = len([k for k in sd if re.match(r"^BN\.\d+\.0\.weight$", k)])
    widths = [sd[f"BN.{k}.0.weight"].shape[0] // 2 for k in range(nband)]
    feats, start = [], 0
    for k, w in enumerate(widths):
        band = ri[:, :, start : start + w].reshape(batch, 2 * w, -1)
        band = F.group_norm(band, 1, sd[f"BN.{k}.0.weight"], sd[f"BN.{k}.0.bias"], eps)
        feats.append(F.conv1d(band, sd[f"BN.{k}.1.weight"], sd[f"BN.{k}.1.bias"]))
        start += w
    x = torch.stack(feats, 1).permute(0, 2, 1, 3)  # B, N, nband, T
    mixture = x
    n = x.shape[1]
    for i in range(n_iter):
        if i:
            x = F.conv2d(mixture + x, sd["separator.concat_block.0.weight"], sd["separator.concat_block.0.bias"],
                         groups=n)
            x = F.prelu(x, sd["separator.concat_block.1.weight"])
        x = _ffi(sd, x)
    out = x.permute(0, 2, 1, 3)  # B, nband, N, T
    est, start = [], 0
    for k, w in enumerate(widths):
        o = F.conv1d(F.prelu(out[:, k], sd[f"mask.{k}.0.weight"]), sd[f"mask.{k}.1.weight"],
                     sd[f"mask.{k}.1.bias"], groups=n_src).view(batch, 2, 2, n_src, w, -1)
        m = o[:, 0] * torch.sigmoid(o[:, 1])
        mr = m[:, 0] - (m[:, 0].sum(1, keepdim=True) - 1) / n_src
        mi = m[:, 1] - m[:, 1].sum(1, keepdim=True) / n_src
        s = spec[:, start : start + w].unsqueeze(1)
        est.append(torch.complex(s.real * mr - s.imag * mi, s.real * mi + s.imag * mr))
        start += w
    est = torch.cat(est, 2)
    out = torch.istft(est.view(batch * n_src, est.shape[2], -1), n_fft=win, hop_length=hop, window=window,
                      length=length)
    return out.view(batch, n_src, length)


# -- size and layout --------------------------------------------------------------------------

@pytest.mark.parametrize("preset, n_iter", [("large", 8), ("small", 4)])
def test_presets_have_the_authors_parameter_count(preset, n_iter):
    model = TIGER.preset(preset)
    assert model.n_params() == AUTHORS_PARAMS
    assert sum(p.numel() for p in model.parameters()) == AUTHORS_PARAMS
    c = model.config
    assert (c.sample_rate, c.win, c.hop, c.feature_dim, c.hidden_dim, c.depth, c.n_iter) == \
        (16000, 640, 160, 128, 256, 5, n_iter)
    assert model.masker.n_bands == 67 and model.encoder.n_bins == 321


def test_band_layout_at_16_and_8_khz():
    assert band_widths(16000, 640) == [1] * 40 + [4] * 10 + [10] * 8 + [20] * 8 + [1]
    assert band_widths(8000, 320) == [1] * 40 + [4] * 10 + [10] * 8 + [1]
    assert band_widths(8000, 640) == [2] * 40 + [8] * 10 + [20] * 8 + [1]
    for rate, n_fft in ((16000, 640), (8000, 320), (8000, 640), (44100, 2048), (48000, 1920)):
        assert sum(band_widths(rate, n_fft)) == n_fft // 2 + 1
    with pytest.raises(ValueError, match="narrower than one bin"):
        band_widths(16000, 512)
    model = TIGER.preset("small", sample_rate=8000)
    assert (model.config.win, model.config.hop, model.masker.n_bands) == (320, 80, 59)
    assert model.n_params() == 696_100  # fewer band projections and mask heads


@pytest.mark.parametrize("config", ["recipes/echoset/tiger.yaml", "recipes/libri2mix/tiger.yaml",
                                    "egs/tiger_mini/conf.yaml"])
def test_training_configs_build_tiger(config):
    from audiomask.training import load_config

    cfg = load_config(Path(__file__).resolve().parents[1] / config)
    model = audiomask.build(cfg.model.name, cfg.model.preset, **cfg.model.overrides)
    assert isinstance(model, TIGER) and model.n_params() == AUTHORS_PARAMS and model.sample_rate == 16000
    assert cfg.optim.lr == 1e-3 and cfg.optim.clip_grad_norm == 5.0


def test_iterations_share_one_set_of_weights():
    counts = {n: TIGER.preset("small", n_iter=n).n_params() for n in (1, 2, 4, 8, 12)}
    assert set(counts.values()) == {AUTHORS_PARAMS}
    model = TIGER.preset("large").eval()
    calls = []
    model.masker.separator.block.register_forward_hook(lambda mod, inp, out: calls.append(mod))
    with torch.no_grad():
        model(torch.randn(1, 1600))
    assert len(calls) == 8 and all(mod is model.masker.separator.block for mod in calls)
    # one FFI block's parameters, stored once
    assert not any(re.search(r"block\.\d", name) for name, _ in model.named_parameters())


def test_config_rebuilds_the_model_and_registry_knows_it():
    assert set(audiomask.list_models()["tiger"]) >= {"large", "small"}
    model = audiomask.build("tiger", "small").eval()
    twin = type(model)(model.config).eval()
    twin.load_state_dict(model.state_dict())
    x = torch.randn(1, 4000)
    with torch.no_grad():
        assert torch.equal(model(x), twin(x))


# -- the authors' weights ----------------------------------------------------------------------

@pytest.mark.parametrize("preset, n_iter", [("large", 8), ("small", 4)])
def test_reference_keys_load_and_match_the_authors_forward(preset, n_iter):
    sd = reference_state_dict()
    assert len(sd) == 838
    model = convert("look2hear-tiger", sd, preset=preset)
    assert model.n_params() == AUTHORS_PARAMS and model.config.n_iter == n_iter
    assert {look2hear_key(k) for k in model.state_dict()} == set(sd)
    torch.manual_seed(1)
    for length in (4000, 4321):
        x = torch.randn(2, length)
        with torch.no_grad():
            ours, ref = model(x), look2hear_reference_forward(sd, x, n_iter)
        assert ours.shape == ref.shape == (2, 2, length)
        assert (ours - ref).abs().max().item() <= 1e-5 * max(1.0, ref.abs().max().item())


def test_converted_model_round_trips(tmp_path):
    sd = reference_state_dict(seed=2)
    model = convert("look2hear-tiger", sd, preset="small")
    direct = TIGER.preset("small").eval()  # the same tensors loaded directly under our names
    direct.load_state_dict({audiomask_key(k): v.reshape(-1) if k.endswith((".gamma", ".beta")) else v
                            for k, v in sd.items()})
    model.save(tmp_path / "tiger.safetensors")
    loaded = load_model(tmp_path / "tiger.safetensors")
    # Lightning checkpoints prefix the names with "audio_model."
    package = {"state_dict": {"audio_model." + k: v for k, v in sd.items()}}
    lightning = convert("look2hear-tiger", package, n_iter=4)
    x = torch.randn(1, 3000)
    with torch.no_grad():
        y = model(x)
        for other in (direct, loaded, lightning):
            assert torch.equal(other(x), y)
    assert all(look2hear_key(audiomask_key(k)) == k for k in sd)


def test_mismatched_state_dicts_are_refused_naming_the_tensor():
    sd = reference_state_dict()
    missing = dict(sd)
    del missing["separator.frame_path.1.Keys.2.norm.gamma"]
    with pytest.raises(CheckpointError, match=re.escape("separator.frame_path.1.Keys.2.norm.gamma")):
        convert("look2hear-tiger", missing, preset="large")
    no_band = {k: v for k, v in sd.items() if not k.startswith("BN.5.0.")}
    with pytest.raises(CheckpointError, match=re.escape("missing ['BN.5.0.weight', 'BN.5.0.bias']")):
        convert("look2hear-tiger", no_band, preset="small")
    extra = {**sd, "separator.freq_path.3.weight": torch.zeros(3)}
    with pytest.raises(CheckpointError, match=re.escape("unexpected ['separator.freq_path.3.weight']")):
        convert("look2hear-tiger", extra, preset="large")
    for key, shape in (("separator.freq_path.0.res_conv.weight", (128, 255, 1)),
                       ("separator.frame_path.2.beta", (1, 127, 1, 1))):
        bad = {**sd, key: torch.zeros(shape)}
        with pytest.raises(CheckpointError, match=re.escape(f"{key} has shape {shape}")):
            convert("look2hear-tiger", bad, preset="large")
    with pytest.raises(ValueError, match="preset='large'"):
        convert("look2hear-tiger", sd)
    with pytest.raises(CheckpointError, match="sub-band widths"):
        convert("look2hear-tiger", sd, preset="small", sample_rate=8000)


# -- behaviour --------------------------------------------------------------------------------

def test_complex_masks_satisfy_the_across_source_constraint():
    # The authors force, per bin and frame, Σ_c Re m_c = 1 and Σ_c Im m_c = 0: the estimates'
    # STFTs add up to the mixture's, and so (linear iSTFT) do the waveforms.
    torch.manual_seed(0)
    model = convert("look2hear-tiger", reference_state_dict(), preset="small")
    mix = torch.randn(2, 8000)
    with torch.no_grad():
        masks = model.estimate_masks(model.encode(mix))
        est = model(mix)
    assert masks.is_complex() and masks.shape == (2, 2, 321, 51)
    assert (masks.real.sum(1) - 1).abs().max().item() < 1e-6
    assert masks.imag.sum(1).abs().max().item() < 1e-6
    assert masks.real.std().item() > 0.05  # not trivially constant
    assert (est.sum(1) - mix).abs().max().item() < 1e-5


@pytest.mark.parametrize("rate", [16000, 8000])
def test_output_length_equals_input_length(rate):
    torch.manual_seed(0)
    tiny = TIGER.preset("tiny", sample_rate=rate).eval()
    small = TIGER.preset("small", sample_rate=rate).eval()
    with torch.no_grad():
        for length in (1, 100, rate // 50 - 1, rate // 50 + 1, rate // 4 + 7, rate):
            assert tiny(torch.randn(2, length)).shape == (2, 2, length), length
        for length in (rate // 10 + 3, rate // 2):
            assert small(torch.randn(1, length)).shape == (1, 2, length)
        assert small(torch.randn(777)).shape == (2, 777)


def test_chunked_inference_works_on_tiger():
    torch.manual_seed(0)
    model = TIGER.preset("tiny").eval()
    x = torch.randn(2, 24_000)
    with torch.no_grad():
        full = model(x)
    assert torch.allclose(separate_chunked(model, x, window=32_000, overlap=4_000), full, atol=1e-6)
    chunked = separate_chunked(model, x[0], window=8_000, overlap=2_000)
    assert chunked.shape == (2, 24_000) and torch.isfinite(chunked).all()
    # every window's estimates add up to its mixture, and cross-fading keeps that
    assert (chunked.sum(0) - x[0]).abs().max().item() < 1e-4


@pytest.mark.slow
def test_small_overfits_one_real_mixture(speech_files):
    """TIGER small learns: one real 16 kHz two-speaker mixture (0.75 s) reaches > 15 dB SI-SDR."""
    import soundfile as sf

    from audiomask.losses import pit_si_sdr_loss
    from audiomask.metrics import pit

    torch.manual_seed(0)
    n = 12_000
    a, _ = sf.read(speech_files[2], dtype="float32", frames=n, start=16000)
    b, _ = sf.read(speech_files[3], dtype="float32", frames=n, start=16000)
    src = torch.stack([torch.from_numpy(a), torch.from_numpy(b)])[None]
    src = src / src.std(dim=-1, keepdim=True) * 0.1
    mix = src.sum(1)
    model = TIGER.preset("small")
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(30):
        loss = pit_si_sdr_loss(model(mix), src)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)  # the authors' clip
        opt.step()
    with torch.no_grad():
        score = pit(model.eval()(mix), src)[2].mean().item()
    assert score > 15.0, score
