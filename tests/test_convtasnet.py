import dataclasses

import pytest
import torch

import audiomask
from audiomask.models import ConvTasNet, ConvTasNetConfig
from audiomask.nn.norms import ChannelLayerNorm, CumulativeLayerNorm, GlobalLayerNorm


def test_paper_preset_has_the_authors_parameter_count():
    assert ConvTasNet.preset("paper").n_params() == 5_050_545
    assert ConvTasNet.preset("paper-causal").n_params() == 5_050_545
    assert audiomask.build("convtasnet", preset="paper").n_params() == 5_050_545


def test_paper_preset_hyper_parameters():
    c = ConvTasNet.make_config("paper")
    assert (c.n_filters, c.kernel_size, c.stride, c.bn_chan, c.skip_chan, c.hid_chan,
            c.conv_kernel_size, c.n_blocks, c.n_repeats, c.sample_rate, c.n_src) == \
        (512, 16, 8, 128, 128, 512, 3, 8, 3, 8000, 2)
    causal = ConvTasNet.preset("paper-causal")
    assert causal.causal and causal.config.norm == "cLN"
    assert not ConvTasNet.preset("paper").causal


@pytest.mark.parametrize("preset", ["tiny", "small-causal"])
def test_output_length_equals_input_length(preset):
    model = ConvTasNet.preset(preset).eval()
    with torch.no_grad():
        for n in [1, 2, 7, 8, 9, 15, 16, 17, 100, 4_097, 100_000]:
            assert model(torch.randn(2, n)).shape == (2, 2, n)
    assert model(torch.randn(50)).shape == (2, 50)
    assert model(torch.randn(3, 1, 50)).shape == (3, 2, 50)


def test_paper_model_output_shape():
    with torch.no_grad():
        assert ConvTasNet.preset("paper").eval()(torch.randn(1, 8001)).shape == (1, 2, 8001)


def test_any_number_of_sources():
    model = audiomask.build("convtasnet", preset="tiny", n_src=4).eval()
    assert model.n_src == 4
    assert model(torch.randn(1, 1000)).shape == (1, 4, 1000)
    softmax = audiomask.build("convtasnet", preset="tiny", n_src=3, mask_act="softmax")
    masks = softmax.estimate_masks(softmax.encode(torch.randn(1, 1000)))
    assert torch.allclose(masks.sum(1), torch.ones(1), atol=1e-6)


def test_causal_model_ignores_the_future():
    torch.manual_seed(0)
    model = ConvTasNet.preset("tiny", norm="cLN", causal=True).eval()
    x = torch.randn(1, 4000)
    y = x.clone()
    y[:, 2500:] = torch.randn(1, 1500)
    with torch.no_grad():
        a, b = model(x), model(y)
    # The encoder frame containing sample t also spans up to L - 1 later samples.
    cut = 2500 - model.encoder.kernel_size
    assert torch.allclose(a[..., :cut], b[..., :cut], atol=1e-6)
    assert not torch.allclose(a[..., 2500:], b[..., 2500:])


def test_noncausal_model_sees_the_future():
    model = ConvTasNet.preset("tiny").eval()
    x = torch.randn(1, 4000)
    y = x.clone()
    y[:, 3000:] += 1.0
    with torch.no_grad():
        assert not torch.allclose(model(x)[..., :2000], model(y)[..., :2000])


def test_causal_needs_causal_norm():
    with pytest.raises(ValueError, match="causal norm"):
        ConvTasNet.preset("tiny", causal=True, norm="gLN")


def test_receptive_field():
    masker = ConvTasNet.preset("paper").masker
    assert masker.receptive_field == 1 + 3 * 2 * (2**8 - 1)  # 1531 frames
    assert ConvTasNet.preset("paper").receptive_field == 1530 * 8 + 16


def test_config_rebuilds_the_model_exactly():
    model = ConvTasNet.preset("tiny", n_src=3)
    clone = type(model)(model.config)
    clone.load_state_dict(model.state_dict())
    x = torch.randn(2, 3000)
    assert torch.equal(model.eval()(x), clone.eval()(x))
    assert isinstance(model.config, ConvTasNetConfig)
    assert dataclasses.asdict(clone.config) == dataclasses.asdict(model.config)


def test_unknown_preset_and_field_are_named():
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        ConvTasNet.preset("huge")
    with pytest.raises(ValueError, match="n_filterz"):
        audiomask.build("convtasnet", n_filterz=3)
    with pytest.raises(ValueError, match="unknown model 'tasnet9'"):
        audiomask.build("tasnet9")


def test_list_models():
    models = audiomask.list_models()
    assert "paper" in models["convtasnet"] and "paper-causal" in models["convtasnet"]


def _reference_norms(x, kind, eps=1e-8):
    if kind == "gLN":
        mean, var = x.mean((1, 2), keepdim=True), x.var((1, 2), unbiased=False, keepdim=True)
        return (x - mean) / (var + eps).sqrt()
    if kind == "chanLN":
        mean, var = x.mean(1, keepdim=True), x.var(1, unbiased=False, keepdim=True)
        return (x - mean) / (var + eps).sqrt()
    out = torch.empty_like(x)
    for t in range(x.shape[-1]):
        past = x[..., : t + 1]
        mean, var = past.mean((1, 2)), past.var((1, 2), unbiased=False)
        out[..., t] = (x[..., t] - mean[:, None]) / (var[:, None] + eps).sqrt()
    return out


@pytest.mark.parametrize("cls,kind", [(GlobalLayerNorm, "gLN"), (CumulativeLayerNorm, "cLN"),
                                      (ChannelLayerNorm, "chanLN")])
def test_norms_match_their_definition(cls, kind):
    torch.manual_seed(0)
    x = torch.randn(3, 6, 40, dtype=torch.float64) * 3 + 1
    norm = cls(6).double()
    norm.weight.data.uniform_(0.5, 2)
    norm.bias.data.uniform_(-1, 1)
    expected = _reference_norms(x, kind) * norm.weight.view(1, -1, 1) + norm.bias.view(1, -1, 1)
    assert torch.allclose(norm(x), expected, atol=1e-10)


def test_convtasnet_mapped_to_16k_separates_before_training():
    """The bundled 8 kHz model's weights on a 16 kHz Conv-TasNet (bases resampled, TCN kept)."""
    from pathlib import Path

    from audiomask.audio import read_audio
    from audiomask.metrics import pit, si_sdr

    m8 = audiomask.load("convtasnet-mini2mix")
    c16 = dataclasses.replace(m8.config, sample_rate=16000, kernel_size=32, stride=16)
    m16 = type(m8)(c16).eval()
    m16.load_state_dict(m16.resampled_state_dict(m8.state_dict(), m8.config))
    ex = Path(__file__).resolve().parents[1] / "egs" / "quickstart"
    mix, rate = read_audio(ex / "mix.wav", channels=1)
    ref = torch.cat([read_audio(ex / f"s{i}.wav", channels=1)[0] for i in (1, 2)])
    assert rate == 16000
    with torch.no_grad():
        est = m16(mix)
    improvement = pit(est, ref[None], metric="si_sdr", reduction="mean")[2] - si_sdr(mix.expand(2, -1), ref).mean()
    assert float(improvement) == pytest.approx(8.76, abs=0.05)
    with pytest.raises(ValueError, match="scale by one integer"):
        bad = type(m8)(dataclasses.replace(m8.config, sample_rate=16000, kernel_size=16, stride=8))
        bad.resampled_state_dict(m8.state_dict(), m8.config)
