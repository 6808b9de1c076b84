import pytest
import torch

from audiomask.filterbanks import ConvDecoder, ConvEncoder, Framing, ISTFTDecoder, STFTEncoder

LENGTHS = [1, 2, 7, 8, 9, 15, 16, 17, 31, 100, 1023, 12_345, 100_000]


@pytest.mark.parametrize("framing", ["centered", "valid"])
def test_conv_encoder_decoder_keep_length(framing):
    enc, dec = ConvEncoder(8, 16, framing=framing), ConvDecoder(8, 16, framing=framing)
    for n in LENGTHS:
        x = torch.randn(2, n)
        rep = enc(x)
        assert rep.shape[:2] == (2, 8) and rep.shape[-1] == enc.framing.n_frames(n)
        assert dec(rep, n).shape == (2, n)
        assert dec(rep.unsqueeze(1).expand(2, 3, 8, -1), n).shape == (2, 3, n)


def test_centered_framing_is_the_authors_padding():
    f = Framing(16, 8, "centered")
    for n in LENGTHS:
        rest = 16 - (8 + n % 16) % 16
        assert f.pads(n) == (8, rest + 8)
        assert (n + sum(f.pads(n)) - 16) % 8 == 0


def test_conv_decoder_inverts_an_orthogonal_basis():
    # With a basis whose frames tile perfectly (L=2S, rectangular halves), decode(encode(x)) = x.
    enc, dec = ConvEncoder(16, 16, 8), ConvDecoder(16, 16, 8)
    eye = torch.eye(16).unsqueeze(1) / 2**0.5
    enc.conv.weight.data.copy_(eye)
    dec.conv.weight.data.copy_(eye)
    for n in LENGTHS:
        x = torch.randn(3, n)
        assert torch.allclose(dec(enc(x), n), x, atol=1e-5)


@pytest.mark.parametrize("window", ["hann", "sqrt_hann"])
def test_stft_roundtrip_exact_for_any_length(window):
    enc = STFTEncoder(640, 160, window=window)
    dec = ISTFTDecoder.like(enc)
    for n in LENGTHS:
        x = torch.randn(2, n)
        spec = enc(x)
        assert spec.is_complex() and spec.shape[1] == 321 and spec.shape[-1] == n // 160 + 1
        y = dec(spec, n)
        assert y.shape == (2, n)
        assert (y - x).abs().max() < 1e-5


def test_stft_masks_real_and_complex():
    enc = STFTEncoder(256, 64)
    dec = ISTFTDecoder.like(enc)
    x = torch.randn(1, 4000)
    spec = enc(x)
    halves = torch.full((1, 2) + spec.shape[1:], 0.5)
    out = dec(halves * spec.unsqueeze(1), 4000)  # magnitude masks keep the mixture phase
    assert torch.allclose(out.sum(1), x, atol=1e-5)
    rot = torch.exp(1j * torch.full(spec.shape, torch.pi))  # complex mask: phase flip
    assert torch.allclose(dec(rot * spec, 4000), -x, atol=1e-5)


def test_complex_mask_kinds():
    from audiomask.filterbanks import complex_mask

    enc = STFTEncoder(256, 64)
    dec = ISTFTDecoder.like(enc)
    x = torch.randn(1, 3000)
    spec = enc(x)
    shape = spec.shape
    minus_one = torch.stack([-torch.ones(shape), torch.zeros(shape)], dim=-3)  # real/imag pair
    assert torch.allclose(dec(complex_mask(minus_one) * spec, 3000), -x, atol=1e-5)
    polar = torch.stack([torch.full(shape, 2.0), torch.full(shape, torch.pi / 2)], dim=-3)
    assert torch.allclose(complex_mask(polar, "polar"), torch.full(shape, 2j), atol=1e-6)
    half = torch.full(shape, 0.5)
    assert torch.allclose(dec(complex_mask(half, "magnitude") * spec, 3000), 0.5 * x, atol=1e-5)
    with pytest.raises(ValueError, match="size-2 axis"):
        complex_mask(half, "real_imag")
