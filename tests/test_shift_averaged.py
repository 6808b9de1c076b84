"""Test-time shift averaging (``audiomask.separation.ShiftAveraged``, ``separate(shifts=…)``,
``separate_file(shifts=…)``, ``audiomask separate --shifts``)."""

from types import SimpleNamespace

import pytest
import torch

import audiomask
from audiomask.audio import read_audio
from audiomask.cli import main
from audiomask.outputs import match_mixture_level
from audiomask.separation import ShiftAveraged, separate


class BandSplitter(torch.nn.Module):
    """Two "sources": a low and a high band of the input (a zero-padded FIR filter, so exactly
    shift-equivariant), in swapped order whenever the input length is odd — as a separator's
    output order may change from one shifted copy to the next."""

    def __init__(self) -> None:
        super().__init__()
        self.lowpass = torch.nn.Conv1d(1, 1, 9, padding=4, bias=False)
        torch.nn.init.constant_(self.lowpass.weight, 1 / 9)
        self.encoder = SimpleNamespace(hop=2)
        self.sample_rate, self.n_src = 8000, 2

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        x = mix if mix.dim() == 2 else mix.unsqueeze(0)
        low = self.lowpass(x.unsqueeze(1))[:, 0]
        out = torch.stack([low, x - low], 1)
        out = out.flip(1) if x.shape[-1] % 2 else out
        return out if mix.dim() == 2 else out[0]


@torch.inference_mode()
def test_shifted_copies_are_realigned_and_averaged():
    torch.manual_seed(0)
    model = BandSplitter()
    wrapped = ShiftAveraged(model, 2)
    assert wrapped.offsets == [0, 1] and wrapped.sample_rate == 8000 and wrapped.n_src == 2
    mix = torch.randn(3, 801)
    # the copy delayed by one sample comes out swapped; aligned, it equals the plain estimate
    assert torch.equal(model(torch.nn.functional.pad(mix, (1, 0)))[:, 0, 1:], model(mix)[:, 1])
    torch.testing.assert_close(wrapped(mix), model(mix), atol=1e-6, rtol=0)
    torch.testing.assert_close(wrapped(mix[0]), model(mix[0]), atol=1e-6, rtol=0)


@torch.inference_mode()
def test_separate_with_shifts_keeps_shape_and_rate_and_changes_the_estimate():
    torch.manual_seed(0)
    model = audiomask.build("convtasnet", preset="tiny").eval()
    mix = torch.randn(2, 16000)  # 2 s at 8 kHz
    plain = separate(model, mix, 8000)
    averaged = separate(model, mix, 8000, shifts=4)
    assert averaged.shape == plain.shape == (2, 2, 16000)
    assert ShiftAveraged(model, 4).offsets == [0, model.encoder.hop // 4, model.encoder.hop // 2,
                                               3 * model.encoder.hop // 4]
    # a strided encoder is not shift-invariant: the average differs from one pass …
    assert (averaged - plain).abs().max() > 1e-4
    # … and it is the same whether the input runs whole or window by window within one window
    torch.testing.assert_close(separate(model, mix, 8000, chunk="always", shifts=4), averaged,
                               atol=1e-5, rtol=0)
    assert separate(model, mix[0], 16000, shifts=2).shape == (2, 16000)


def test_bad_shifts_are_refused():
    model = audiomask.build("convtasnet", preset="tiny")
    for bad in (0, -1, 2.5, model.encoder.hop + 1):
        with pytest.raises(ValueError, match="shifts"):
            ShiftAveraged(model, bad)
    with pytest.raises(NotImplementedError, match="offline"):
        ShiftAveraged(model, 2).step([], None)


def test_cli_shifts(two_speaker_mixture, tmp_path, capsys):
    mix_path, sources, rate = two_speaker_mixture
    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.safetensors"
    audiomask.build("convtasnet", preset="tiny").save(ckpt)
    assert main(["separate", str(mix_path), "--model", str(ckpt), "--out", str(tmp_path / "a"),
                 "--shifts", "2", "-q"]) == 0
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["mix_s1.wav", "mix_s2.wav"]
    assert main(["separate", str(mix_path), "--model", str(ckpt), "--out", str(tmp_path / "b"),
                 "--shifts", "0", "-q"]) != 0
    assert "--shifts" in capsys.readouterr().err
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())


def test_separate_file_shifts_equal_separate_with_shifts(two_speaker_mixture):
    mix_path, sources, rate = two_speaker_mixture
    torch.manual_seed(0)
    model = audiomask.build("convtasnet", preset="tiny").eval()
    wav, _ = read_audio(mix_path, channels=1)
    expected, _ = match_mixture_level(separate(model, wav[0], rate, shifts=3), wav[0])
    torch.testing.assert_close(audiomask.separate_file(mix_path, model, shifts=3), expected, rtol=0, atol=1e-6)
    assert not torch.allclose(audiomask.separate_file(mix_path, model), expected, atol=1e-4)
    with pytest.raises(ValueError, match="shifts"):
        audiomask.separate_file(mix_path, model, shifts=0)
