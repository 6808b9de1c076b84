"""Weights from Asteroid and from the authors' code give the same outputs in audiomask."""

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from audiomask.interop import convert
from audiomask.models.checkpoint import CheckpointError

from conftest import require_peer

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


def reference_state_dict(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with exactly the keys and shapes listed in shared/reference/<name>."""
    path = REFERENCE / name
    if not path.is_file():
        pytest.skip(f"{path} not found")
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^(P|Pf|B) (\S+) \(([\d, ]*)\) float32$", line)
        if m:
            shape = tuple(int(s) for s in m.group(3).replace(" ", "").split(",") if s)
            state[m.group(2)] = torch.randn(shape, generator=gen) * 0.1 + (1.0 if "reg" in m.group(2) or "LN" in m.group(2) else 0.0)
    return state


def naplab_reference_forward(sd: dict[str, torch.Tensor], x: torch.Tensor, n_src: int,
                             layers: int = 8) -> torch.Tensor:
    """The authors' non-causal TasNet forward, written out functionally from its description:
    pad stride + rest / stride, encoder, gLN, bottleneck, 1x1-PReLU-gLN-depthwise-PReLU-gLN blocks
    with residual and skip outputs, PReLU, 1x1, sigmoid masks, transposed-conv decoder, trim."""
    enc_w = sd["encoder.weight"]
    n_filters, _, win = enc_w.shape
    stride, length = win // 2, x.shape[-1]
    rest = win - (stride + length % win) % win
    enc = F.conv1d(F.pad(x, (stride, rest + stride)).unsqueeze(1), enc_w, stride=stride)
    h = F.group_norm(enc, 1, sd["TCN.LN.weight"], sd["TCN.LN.bias"], eps=1e-8)
    h = F.conv1d(h, sd["TCN.BN.weight"], sd["TCN.BN.bias"])
    skip = 0.0
    n_blocks = len({k.split(".")[2] for k in sd if k.startswith("TCN.TCN.")})
    for i in range(n_blocks):
        p = f"TCN.TCN.{i}."
        d = 2 ** (i % layers)
        y = F.conv1d(h, sd[p + "conv1d.weight"], sd[p + "conv1d.bias"])
        y = F.group_norm(F.prelu(y, sd[p + "nonlinearity1.weight"]), 1,
                         sd[p + "reg1.weight"], sd[p + "reg1.bias"], eps=1e-8)
        y = F.conv1d(y, sd[p + "dconv1d.weight"], sd[p + "dconv1d.bias"], dilation=d, padding=d,
                     groups=y.shape[1])
        y = F.group_norm(F.prelu(y, sd[p + "nonlinearity2.weight"]), 1,
                         sd[p + "reg2.weight"], sd[p + "reg2.bias"], eps=1e-8)
        h = h + F.conv1d(y, sd[p + "res_out.weight"], sd[p + "res_out.bias"])
        skip = skip + F.conv1d(y, sd[p + "skip_out.weight"], sd[p + "skip_out.bias"])
    out = F.conv1d(F.prelu(skip, sd["TCN.output.0.weight"]), sd["TCN.output.1.weight"],
                   sd["TCN.output.1.bias"])
    masks = torch.sigmoid(out).view(x.shape[0], n_src, n_filters, -1)
    masked = (masks * enc.unsqueeze(1)).view(x.shape[0] * n_src, n_filters, -1)
    wav = F.conv_transpose1d(masked, sd["decoder.weight"], stride=stride)
    return wav[:, 0, stride : stride + length].view(x.shape[0], n_src, length)


def test_naplab_reference_keys_load_and_match_the_authors_forward():
    sd = reference_state_dict("convtasnet_naplab.keys.txt")
    model = convert("naplab-convtasnet", sd)
    assert model.n_params() == 5_050_545 and model.sample_rate == 8000 and model.n_src == 2
    assert model.config.framing == "centered" and not model.causal
    torch.manual_seed(1)
    for length in (8000, 8007, 8008, 100):
        x = torch.randn(2, length)
        with torch.no_grad():
            diff = (model(x) - naplab_reference_forward(sd, x, n_src=2)).abs().max().item()
        assert diff <= 1e-5, (length, diff)


def test_naplab_causal_layout_is_detected():
    sd = reference_state_dict("convtasnet_naplab.keys.txt")
    for k in list(sd):
        if k.startswith("TCN.LN.") or re.search(r"reg\d\.", k):
            new = k.replace(".weight", ".gain")
            sd[new] = sd.pop(k).reshape(1, -1, 1)
    model = convert("naplab-convtasnet", sd)
    assert model.causal and model.config.norm == "cLN"


def test_asteroid_reference_keys_load():
    model = convert("asteroid-convtasnet", reference_state_dict("convtasnet_asteroid.keys.txt"))
    assert model.n_params() == 5_050_545 and model.config.framing == "valid"


def test_mismatched_state_dict_is_named():
    sd = reference_state_dict("convtasnet_naplab.keys.txt")
    sd["TCN.TCN.3.dconv1d.weight"] = torch.zeros(512, 1, 5)
    with pytest.raises(CheckpointError, match=r"TCN|blocks\.3\.dw_conv"):
        convert("naplab-convtasnet", sd)
    sd = reference_state_dict("convtasnet_naplab.keys.txt")
    del sd["TCN.TCN.5.skip_out.bias"]
    with pytest.raises(CheckpointError, match=r"blocks\.5\.skip_conv\.bias"):
        convert("naplab-convtasnet", sd)
    sd = reference_state_dict("convtasnet_naplab.keys.txt")
    sd["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="extra.weight"):
        convert("naplab-convtasnet", sd)
    with pytest.raises(ValueError, match="unknown source"):
        convert("espnet-convtasnet", sd)


@pytest.mark.peer
@pytest.mark.parametrize("kwargs,overrides", [
    ({}, {}),
    ({"norm_type": "cLN", "causal": True}, {"norm": "chanLN", "causal": True}),
    ({"norm_type": "cgLN", "causal": True}, {"norm": "cLN", "causal": True}),
    ({"n_src": 3, "n_blocks": 4, "n_repeats": 2}, {"n_blocks": 4}),
])
def test_asteroid_convtasnet_equivalence(kwargs, overrides):
    asteroid_models = require_peer("asteroid.models")
    torch.manual_seed(0)
    peer = asteroid_models.ConvTasNet(**({"n_src": 2} | kwargs)).eval()
    with torch.no_grad():
        for p in peer.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # away from the init so every tensor matters
    ours = convert("asteroid-convtasnet", peer.state_dict(), **overrides)
    package = {"model_name": "ConvTasNet", "model_args": peer.get_model_args(),
               "state_dict": peer.state_dict()}
    from_package = convert("asteroid-convtasnet", package)  # config read from model_args
    assert ours.n_params() == sum(p.numel() for p in peer.parameters())
    for length in (8000, 12_345):
        x = torch.randn(2, length)
        with torch.no_grad():
            expected = peer(x)
            assert (ours(x) - expected).abs().max().item() <= 1e-5
            assert (from_package(x) - expected).abs().max().item() <= 1e-5
