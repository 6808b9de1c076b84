"""MossFormer / MossFormer2: parameter counts, the authors' checkpoints, lengths, memory, learning."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import audiomask
from audiomask.interop import convert
from audiomask.interop.mossformer import to_clearervoice_mossformer2, to_modelscope_mossformer
from audiomask.models.checkpoint import CheckpointError
from audiomask.models.mossformer import MossFormer, MossFormer2, MossFormer2Config, MossFormerConfig

from conftest import LIBRI

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"
MODELSCOPE_KEYS = "mossformer_modelscope.keys.txt"
CLEARERVOICE_KEYS = "mossformer2_clearervoice.keys.txt"


def reference_state_dict(name: str, seed: int = 0, max_layers: int | None = None) -> dict[str, torch.Tensor]:
    """Random tensors with exactly the keys and shapes of shared/reference/<name>, in its order.

    Trainable tensors (P) are random; the frozen rotary frequencies (Pf) are one tensor shared
    by every layer, as in the authors' model; buffers (B) are random too. ``max_layers`` keeps
    only the first layers (a cheap model with the real widths)."""
    path = REFERENCE / name
    if not path.is_file():
        pytest.skip(f"{path} not found")
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    frozen: dict[tuple[int, ...], torch.Tensor] = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^(P|Pf|B) (\S+) \(([\d, ]*)\) float32$", line)
        if not m:
            continue
        kind, key = m.group(1), m.group(2)
        layer = re.search(r"\.(?:layers|fsmn)\.(\d+)\.", key)
        if max_layers is not None and layer and int(layer.group(1)) >= max_layers:
            continue
        shape = tuple(int(s) for s in m.group(3).replace(" ", "").split(",") if s)
        if kind == "Pf":
            state[key] = frozen.setdefault(shape, torch.rand(shape, generator=gen))
        else:
            gain = re.search(r"(norm\d?(\.norm)?|\.mdl\.0)\.(weight|g)$", key) is not None
            state[key] = torch.randn(shape, generator=gen) * 0.1 + (1.0 if gain else 0.0)
    return state


# -- the authors' forward pass, written out functionally from their code -------------------------
def _ffconvm(sd, p, x, norm):
    if norm == "scale":
        n = torch.norm(x, dim=-1, keepdim=True) * x.shape[-1] ** -0.5
        h = x / n.clamp(min=1e-5) * sd[p + ".mdl.0.g"]
    else:
        h = F.layer_norm(x, x.shape[-1:], sd[p + ".mdl.0.weight"], sd[p + ".mdl.0.bias"])
    h = F.silu(F.linear(h, sd[p + ".mdl.1.weight"], sd[p + ".mdl.1.bias"]))
    w = sd[p + ".mdl.3.sequential.1.conv.weight"]
    return h + F.conv1d(h.transpose(1, 2), w, padding=(w.shape[-1] - 1) // 2, groups=w.shape[0]).transpose(1, 2)


def _rotary(t, freqs):
    """rotary_embedding_torch.rotate_queries_or_keys on [B, n, d]."""
    ang = torch.einsum("i,j->ij", torch.arange(t.shape[-2], dtype=t.dtype), freqs)
    ang = ang[..., None].expand(*ang.shape, 2).reshape(ang.shape[0], -1)  # '... n -> ... (n r)'
    d = ang.shape[-1]
    mid = t[..., :d]
    pairs = mid.reshape(*mid.shape[:-1], d // 2, 2)
    half = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).reshape(mid.shape)
    return torch.cat((mid * ang.cos() + half * ang.sin(), t[..., d:]), dim=-1)


def _flash(sd, p, x, g=256):
    b, n, _ = x.shape
    x_shift, x_pass = x.chunk(2, dim=-1)
    normed = torch.cat((F.pad(x_shift, (0, 0, 1, -1)), x_pass), dim=-1)
    v, u = _ffconvm(sd, p + ".to_hidden", normed, "scale").chunk(2, dim=-1)
    qk = _ffconvm(sd, p + ".to_qk", normed, "scale")
    qk = torch.einsum("...d,hd->...hd", qk, sd[p + ".qk_offset_scale.gamma"]) + sd[p + ".qk_offset_scale.beta"]
    quad_q, lin_q, quad_k, lin_k = (_rotary(t, sd[p + ".rotary_pos_emb.freqs"]) for t in qk.unbind(-2))
    pad = (g - n % g) % g
    mask = F.pad(torch.ones(b, n, dtype=torch.bool), (0, pad), value=False).view(b, -1, 1, g)
    quad_q, quad_k, lin_q, lin_k, v_, u_ = (
        F.pad(t, (0, 0, 0, pad)).reshape(b, -1, g, t.shape[-1]) for t in (quad_q, quad_k, lin_q, lin_k, v, u))
    attn = F.relu(torch.einsum("bgid,bgjd->bgij", quad_q, quad_k) / g) ** 2
    attn = attn.masked_fill(~mask, 0.0)
    outs = []
    for w in (v_, u_):
        quad = torch.einsum("bgij,bgjd->bgid", attn, w)
        lin = torch.einsum("bgnd,bde->bgne", lin_q, torch.einsum("bgnd,bgne->bde", lin_k, w) / n)
        outs.append((quad + lin).reshape(b, -1, w.shape[-1])[:, :n])
    att_v, att_u = outs
    return x + _ffconvm(sd, p + ".to_out", (att_u * v) * torch.sigmoid(att_v * u), "scale")


def _gated_fsmn_block(sd, p, x, lorder=20):
    c1 = F.prelu(F.conv1d(x.transpose(1, 2), sd[p + ".conv1.0.weight"], sd[p + ".conv1.0.bias"]),
                 sd[p + ".conv1.1.weight"])
    n1 = F.layer_norm(c1.transpose(1, 2), c1.shape[1:2], sd[p + ".norm1.weight"], sd[p + ".norm1.bias"])
    q = p + ".gated_fsmn"
    x_u = _ffconvm(sd, q + ".to_u", n1, "layer")
    x_v = _ffconvm(sd, q + ".to_v", n1, "layer")
    p1 = F.linear(F.relu(F.linear(x_u, sd[q + ".fsmn.linear.weight"], sd[q + ".fsmn.linear.bias"])),
                  sd[q + ".fsmn.project.weight"])
    skip = p1.unsqueeze(1).permute(0, 3, 2, 1)  # [B, C, T, 1]
    depth = len([k for k in sd if k.startswith(q + ".fsmn.conv.conv")])
    for i in range(depth):
        dil = 2**i
        pad = lorder + (dil - 1) * (lorder - 1) - 1
        w = sd[f"{q}.fsmn.conv.conv{i + 1}.weight"]
        out = F.conv2d(F.pad(skip, (0, 0, pad, pad)), w, dilation=(dil, 1), groups=w.shape[0])
        out = F.instance_norm(out, weight=sd[f"{q}.fsmn.conv.norm{i + 1}.weight"],
                              bias=sd[f"{q}.fsmn.conv.norm{i + 1}.bias"], eps=1e-5)
        out = F.prelu(out, sd[f"{q}.fsmn.conv.prelu{i + 1}.weight"])
        skip = torch.cat([out, skip], dim=1)
    fsmn_out = x_u + out.permute(0, 3, 2, 1)[:, 0]
    gated = x_v * fsmn_out + n1
    n2 = F.layer_norm(gated, gated.shape[-1:], sd[p + ".norm2.weight"], sd[p + ".norm2.bias"])
    return F.conv1d(n2.transpose(1, 2), sd[p + ".conv2.weight"], sd[p + ".conv2.bias"]).transpose(1, 2) + x


def authors_forward(sd: dict[str, torch.Tensor], mix: torch.Tensor, n_src: int = 2) -> torch.Tensor:
    """ModelScope MossFormer / ClearerVoice MossFormer2 ``forward`` on ``mix [B, T]`` → ``[B, C, T]``."""
    v2 = "enc.conv1d.weight" in sd
    enc_w, dec_w = (sd["enc.conv1d.weight"], sd["dec.weight"]) if v2 else (sd["encoder.conv1d.weight"], sd["decoder.weight"])
    stack = "mask_net.mdl.intra_mdl" if v2 else "mask_net.mdl.att_mdl"
    stride = enc_w.shape[-1] // 2
    w = F.relu(F.conv1d(mix.unsqueeze(1), enc_w, stride=stride))
    x = F.group_norm(w, 1, sd["mask_net.norm.weight"], sd["mask_net.norm.bias"], eps=1e-8)
    x = F.conv1d(x, sd["mask_net.conv1d_encoder.weight"])
    sinu = torch.einsum("i,j->ij", torch.arange(x.shape[-1], dtype=torch.float32), sd["mask_net.pos_enc.inv_freq"])
    x = x + (torch.cat((sinu.sin(), sinu.cos()), dim=-1) * sd["mask_net.pos_enc.scale"]).transpose(0, 1)
    h = x.permute(0, 2, 1)
    n_layers = len({k.split(".")[5] for k in sd if ".mossformerM.layers." in k})
    for i in range(n_layers):
        h = _flash(sd, f"{stack}.mossformerM.layers.{i}", h)
        if v2:
            h = _gated_fsmn_block(sd, f"{stack}.mossformerM.fsmn.{i}", h)
    norm = f"{stack}.norm" if v2 else f"{stack}.norm.norm"
    h = F.layer_norm(h, h.shape[-1:], sd[norm + ".weight"], sd[norm + ".bias"], eps=1e-6).permute(0, 2, 1)
    out_norm = "mask_net.mdl.intra_norm" if v2 else "mask_net.mdl.att_norm"
    h = F.group_norm(h, 1, sd[out_norm + ".weight"], sd[out_norm + ".bias"], eps=1e-8) + x
    h = F.conv1d(F.prelu(h, sd["mask_net.prelu.weight"]), sd["mask_net.conv1d_out.weight"], sd["mask_net.conv1d_out.bias"])
    b, _, s = h.shape
    h = h.view(b * n_src, -1, s)
    h = torch.tanh(F.conv1d(h, sd["mask_net.output.0.weight"], sd["mask_net.output.0.bias"])) * \
        torch.sigmoid(F.conv1d(h, sd["mask_net.output_gate.0.weight"], sd["mask_net.output_gate.0.bias"]))
    masks = F.relu(F.conv1d(h, sd["mask_net.conv1_decoder.weight"]).view(b, n_src, -1, s)).transpose(0, 1)
    est = torch.stack([F.conv_transpose1d(w * masks[i], dec_w, stride=stride)[:, 0] for i in range(n_src)], dim=1)
    t = mix.shape[-1]
    return F.pad(est, (0, t - est.shape[-1])) if est.shape[-1] < t else est[..., :t]


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def modelscope_sd() -> dict[str, torch.Tensor]:
    return reference_state_dict(MODELSCOPE_KEYS)


@pytest.fixture(scope="module")
def clearervoice_sd() -> dict[str, torch.Tensor]:
    return reference_state_dict(CLEARERVOICE_KEYS)


@pytest.fixture(scope="module")
def modelscope_model(modelscope_sd) -> MossFormer:
    return convert("modelscope-mossformer", modelscope_sd)


@pytest.fixture(scope="module")
def clearervoice_model(clearervoice_sd) -> MossFormer2:
    return convert("clearervoice-mossformer2", clearervoice_sd)


# -- sizes ---------------------------------------------------------------------------------------
def test_paper_presets_have_the_authors_parameter_counts(modelscope_model, clearervoice_model):
    assert modelscope_model.n_params() == 42_101_834
    assert clearervoice_model.n_params() == 55_735_394
    with torch.device("meta"):  # building is then free
        assert MossFormer.preset("paper").n_params() == 42_101_834
        assert MossFormer.preset("paper-causal").n_params() == 42_101_834
        assert MossFormer2.preset("paper").n_params() == 55_735_394
        assert MossFormer2.preset("paper-8k").n_params() == 55_735_394
        assert audiomask.build("mossformer2", "paper-causal").n_params() == 55_735_394
    # the frozen rotary frequencies (16 values) are a buffer, not a parameter
    assert modelscope_model.masker.rotary.freqs.shape == (16,)


def test_paper_preset_configurations():
    c = MossFormer.make_config("paper")
    assert (c.n_filters, c.kernel_size, c.stride, c.d_model, c.n_layers, c.group_size, c.qk_dim,
            c.expansion, c.sample_rate, c.n_src) == (512, 16, 8, 512, 24, 256, 128, 4, 8000, 2)
    c2 = MossFormer2.make_config("paper")
    assert (c2.sample_rate, c2.fsmn_channels, c2.fsmn_lorder, c2.fsmn_depth) == (16000, 256, 20, 2)
    assert MossFormer2.make_config("paper-8k").sample_rate == 8000
    assert isinstance(c, MossFormerConfig) and isinstance(c2, MossFormer2Config)
    models = audiomask.list_models()
    assert {"paper", "paper-causal", "small", "small-causal"} <= set(models["mossformer"])
    assert {"paper", "paper-8k", "small", "small-causal"} <= set(models["mossformer2"])


# -- the authors' checkpoints --------------------------------------------------------------------
@pytest.mark.parametrize("keys,source", [(MODELSCOPE_KEYS, "modelscope-mossformer"),
                                         (CLEARERVOICE_KEYS, "clearervoice-mossformer2")])
def test_same_output_as_the_authors_forward(keys, source):
    """Two layers with the released widths (every kind of tensor), lengths with and without
    chunk padding: audiomask equals a functional transcription of the authors' forward."""
    sd = reference_state_dict(keys, seed=3, max_layers=2)
    model = convert(source, sd)
    assert model.config.n_layers == 2
    torch.manual_seed(0)
    for length in (2_055, 4_512):  # 255 frames (one padded chunk), 563 frames (three chunks)
        x = torch.randn(2, length)
        with torch.no_grad():
            ours, theirs = model(x), authors_forward(sd, x)
        scale = theirs.abs().max().item()
        assert scale > 0
        assert (ours - theirs).abs().max().item() <= 2e-5 * scale, length


def test_modelscope_round_trip(modelscope_sd, modelscope_model):
    model = modelscope_model
    assert model.name == "mossformer" and model.sample_rate == 8000 and not model.causal
    back = to_modelscope_mossformer(model)
    assert set(back) == set(modelscope_sd)
    assert all(back[k].shape == modelscope_sd[k].shape and torch.equal(back[k], modelscope_sd[k]) for k in back)
    again = convert("modelscope-mossformer", back)
    x = torch.randn(1, 1_600)
    with torch.no_grad():
        y = model(x)
        assert torch.equal(y, again(x))
    assert y.shape == (1, 2, 1_600) and torch.isfinite(y).all()
    # ModelScope ships encoder.bin / decoder.bin / masknet.bin: the three dicts load too
    split = {"encoder": {k[8:]: v for k, v in back.items() if k.startswith("encoder.")},
             "decoder": {k[8:]: v for k, v in back.items() if k.startswith("decoder.")},
             "masknet": {k[9:]: v for k, v in back.items() if k.startswith("mask_net.")}}
    assert all(torch.equal(a, b) for a, b in zip(convert("modelscope-mossformer", split).state_dict().values(),
                                                  model.state_dict().values()))


def test_clearervoice_round_trip(clearervoice_sd, clearervoice_model):
    model = clearervoice_model
    assert model.name == "mossformer2" and model.sample_rate == 16000 and model.config.fsmn_channels == 256
    back = to_clearervoice_mossformer2(model)
    assert set(back) == set(clearervoice_sd)
    assert all(torch.equal(back[k], clearervoice_sd[k]) for k in back)
    # ClearerVoice's checkpoints: {"model": state_dict} of the MossFormer2_SS_16K wrapper
    again = convert("clearervoice-mossformer2", {"model": {"model." + k: v for k, v in back.items()}})
    x = torch.randn(1, 1_600)
    with torch.no_grad():
        y = model(x)
        assert torch.equal(y, again(x))
    assert y.shape == (1, 2, 1_600) and torch.isfinite(y).all()
    assert convert("clearervoice-mossformer2", back, sample_rate=8000).sample_rate == 8000


@pytest.mark.parametrize("keys,source", [(MODELSCOPE_KEYS, "modelscope-mossformer"),
                                         (CLEARERVOICE_KEYS, "clearervoice-mossformer2")])
def test_bad_checkpoints_are_named(keys, source):
    sd = reference_state_dict(keys, max_layers=2)
    layer = "mask_net.mdl.att_mdl" if "modelscope" in source else "mask_net.mdl.intra_mdl"
    key = f"{layer}.mossformerM.layers.1.to_qk.mdl.1.bias"
    missing = {k: v for k, v in sd.items() if k != key}
    with pytest.raises(CheckpointError, match=re.escape(key)):
        convert(source, missing)
    with pytest.raises(CheckpointError, match="unexpected.*mask_net.extra.weight"):
        convert(source, {**sd, "mask_net.extra.weight": torch.zeros(3)})
    with pytest.raises(CheckpointError, match=re.escape(key) + r" has shape \(7,\)"):
        convert(source, {**sd, key: torch.zeros(7)})
    rotary = f"{layer}.mossformerM.layers.1.rotary_pos_emb.freqs"
    with pytest.raises(CheckpointError, match=re.escape(rotary) + ".*shared"):
        convert(source, {**sd, rotary: sd[rotary] + 1})
    with pytest.raises(CheckpointError, match="state_dict has no"):
        convert(source, {"something.else": torch.zeros(1)})
    if "clearervoice" in source:
        conv = f"{layer}.mossformerM.fsmn.0.gated_fsmn.fsmn.conv.conv2.weight"
        with pytest.raises(CheckpointError, match=re.escape(conv)):
            convert(source, {**sd, conv: sd[conv][..., 0]})


# -- behaviour ----------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [MossFormer, MossFormer2])
@pytest.mark.parametrize("rate", [8000, 16000])
def test_output_is_finite_and_of_input_length(cls, rate):
    torch.manual_seed(0)
    model = cls.preset("small", sample_rate=rate).eval()
    lengths = [rate, int(2.5 * rate) + 3, 10 * rate]
    with torch.no_grad():
        for n in lengths:
            y = model(torch.randn(1, n) * 0.3)
            assert y.shape == (1, 2, n) and torch.isfinite(y).all(), n
        for n in (1, 7, 15, 16, 17, 31):  # shorter than an encoder window and around it
            assert model(torch.randn(2, n)).shape == (2, 2, n)
        assert model(torch.randn(50)).shape == (2, 50)


@pytest.mark.parametrize("cls", [MossFormer, MossFormer2])
def test_causal_variant_ignores_the_future(cls):
    torch.manual_seed(0)
    model = cls.preset("small-causal", dropout=0.0).eval()
    assert model.causal
    x = torch.randn(1, 6000)
    y = x.clone()
    y[:, 3500:] = torch.randn(1, 2500)
    with torch.no_grad():
        a, b = model(x), model(y)
    cut = 3500 - model.encoder.kernel_size  # the frame holding sample t reaches L - 1 samples ahead
    assert torch.allclose(a[..., :cut], b[..., :cut], atol=1e-6)
    assert not torch.allclose(a[..., 3500:], b[..., 3500:])
    with pytest.raises(ValueError, match="causal norm"):
        cls.preset("small", causal=True)


@pytest.mark.parametrize("cls", [MossFormer, MossFormer2])
def test_noncausal_model_sees_the_future(cls):
    model = cls.preset("small").eval()
    x = torch.randn(1, 6000)
    y = x.clone()
    y[:, 5000:] += 1.0
    with torch.no_grad():
        assert not torch.allclose(model(x)[..., :1000], model(y)[..., :1000])


@pytest.mark.parametrize("causal", [False, True])
def test_attention_matches_its_definition(causal):
    """Chunked attention against a brute-force O(T²) evaluation of its definition: within a
    chunk of g frames relu²(q·k/g) (j <= i when causal); across the sequence q_lin·k_lin / T
    (causal: over the previous chunks only, / g)."""
    from audiomask.nn.attention import GatedAttentionUnit

    torch.manual_seed(0)
    g, frames = 8, 27
    unit = GatedAttentionUnit(16, group_size=g, qk_dim=6, dropout=0.0, causal=causal).eval()
    qq, ql, kq, kl = (torch.randn(2, frames, 6, dtype=torch.float64) for _ in range(4))
    values = torch.randn(2, frames, 5, dtype=torch.float64)
    expected = torch.zeros_like(values)
    for i in range(frames):
        for j in range(frames):
            same_chunk = i // g == j // g
            if same_chunk and (j <= i or not causal):
                expected[:, i] += F.relu((qq[:, i] * kq[:, j]).sum(-1) / g)[:, None] ** 2 * values[:, j]
            if not causal:
                expected[:, i] += (ql[:, i] * kl[:, j]).sum(-1)[:, None] * values[:, j] / frames
            elif j // g < i // g:
                expected[:, i] += (ql[:, i] * kl[:, j]).sum(-1)[:, None] * values[:, j] / g
    assert torch.allclose(unit.attend(qq, ql, kq, kl, values), expected, atol=1e-10)


class _LargestTensor(TorchDispatchMode):
    """Records the element count of the largest tensor any op produces."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("cls", [MossFormer, MossFormer2])
@pytest.mark.parametrize("causal", [False, True])
def test_attention_memory_is_linear_in_length(cls, causal):
    """No tensor grows like T²: quadrupling the frames quadruples the largest allocation."""
    preset = "small-causal" if causal else "small"
    model = cls.preset(preset, n_layers=1).eval()
    largest = []
    for frames in (2048, 8192):
        x = torch.randn(1, (frames - 1) * model.encoder.stride + model.encoder.kernel_size)
        with torch.no_grad(), _LargestTensor() as probe:
            model(x)
        largest.append(probe.largest)
    assert largest[1] <= 4.5 * largest[0], largest
    assert largest[1] < 8192**2 / 10, largest  # far below one T×T matrix


def test_config_rebuilds_the_model_exactly():
    model = MossFormer2.preset("small", n_src=3).eval()
    clone = type(model)(model.config).eval()
    clone.load_state_dict(model.state_dict())
    x = torch.randn(2, 3000)
    with torch.no_grad():
        assert torch.equal(model(x), clone(x))
    assert model(x).shape == (2, 3, 3000)
    assert dataclasses.asdict(clone.config) == dataclasses.asdict(model.config)


def test_save_and_load(tmp_path):
    model = audiomask.build("mossformer", "small").eval()
    model.save(tmp_path / "m.safetensors")
    loaded = audiomask.load(tmp_path / "m.safetensors")
    x = torch.randn(1, 2000)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_chunked_inference_runs():
    from audiomask.streaming import separate_chunked

    model = MossFormer.preset("small").eval()
    y = separate_chunked(model, torch.randn(1, 24_000), window=8_000, overlap=2_000)
    assert y.shape == (1, 2, 24_000) and torch.isfinite(y).all()


@pytest.mark.slow
@pytest.mark.parametrize("cls", [MossFormer, MossFormer2])
def test_small_preset_overfits_one_real_mixture(cls):
    """A small model learns to separate one 3 s real mixture (8 kHz) to > 15 dB SI-SDR
    (about 50 steps, under a minute on 2 cores)."""
    from audiomask.audio import resample
    from audiomask.losses import pit_si_sdr_loss
    from audiomask.metrics import pit

    files = sorted(LIBRI.glob("*.flac"))
    if len(files) < 2:
        pytest.skip(f"real speech not found at {LIBRI}")
    torch.manual_seed(0)
    sources = []
    for f in files[:2]:
        wav, rate = sf.read(f, dtype="float32")
        wav = resample(torch.from_numpy(wav), rate, 8000)[8000 : 8000 + 24_000]
        sources.append(wav / wav.std())
    src = torch.stack(sources)[None] * 0.1  # [1, 2, T]
    mix = src.sum(1)
    model = cls.preset("small", dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    best = -100.0
    for step in range(300):
        est = model(mix)
        loss = pit_si_sdr_loss(est, src)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        best = max(best, -loss.item())
        if best > 16.0:
            break
    model.eval()
    with torch.no_grad():
        est = model(mix)
    _, _, score = pit(est, src, metric="si_sdr")
    assert score.mean().item() > 15.0, (step, best)
