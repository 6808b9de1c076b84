"""Rebuild the bundled noisy-reverberant example, ``noisy/``: the two validation speakers of
``mix.wav`` (never used in training), each reverberated in one simulated room (image
source, RT60 0.45 s nominal, seeded), plus real noise — a crop of the held-out last quarter of
``shared/data/noise/doing_the_dishes.wav`` (the part ``bench/quality.py`` keeps for
validation) — at 5 dB SNR; 16 kHz, 5 s. The references ``s1.wav``, ``s2.wav`` are the
reverberant sources (the WHAMR! convention).

    python egs/quickstart/make_noisy_example.py     # needs pyroomacoustics (audiomask[simulate])
"""

from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from audiomask.audio import read_audio
from audiomask.data.reverb import RoomSimulator, convolve

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[2] / "shared" / "data"
SPEAKERS = ["1235-135883-0000.flac", "1963-142393-0000.flac"]  # as make_example.py
START, SECONDS, RATE = 0.5, 5.0, 16000
NOISE, SNR_DB, SEED = "doing_the_dishes.wav", 5.0, 11


def main() -> None:
    rng = np.random.default_rng(SEED)
    rirs, room = RoomSimulator(RATE, rt60=(0.45, 0.45)).sample(rng, len(SPEAKERS))
    sources = []
    for name, rir in zip(SPEAKERS, rirs):
        wav, rate = sf.read(DATA / "librispeech-mini" / name, dtype="float64")
        assert rate == RATE
        seg = wav[int(START * rate) : int((START + SECONDS) * rate)]
        seg = seg / np.sqrt(np.mean(seg**2))
        sources.append(convolve(seg, rir.rir, rir.direct))
    src = np.stack(sources)
    noise = read_audio(DATA / "noise" / NOISE, sample_rate=RATE, downmix=True, dtype=torch.float64)[0][0].numpy()
    held_out = noise[int(0.75 * len(noise)) :]
    start = int(rng.integers(0, len(held_out) - src.shape[1]))
    crop = held_out[start : start + src.shape[1]]
    speech = src.sum(0)
    crop *= np.sqrt(np.mean(speech**2) / np.mean(crop**2)) * 10 ** (-SNR_DB / 20)
    scale = 0.8 / np.abs(speech + crop).max()
    out = HERE / "noisy"
    out.mkdir(exist_ok=True)
    for i, s in enumerate(src * scale, 1):
        sf.write(out / f"s{i}.wav", s, RATE, subtype="PCM_16")
    sf.write(out / "mix.wav", (speech + crop) * scale, RATE, subtype="PCM_16")
    print(f"room {np.round(room['room_dim'], 2).tolist()} m, RT60 {room['rt60']:.2f} s, "
          f"distances {[round(r.info['distance'], 2) for r in rirs]} m; noise {NOISE} at {SNR_DB:g} dB SNR")


if __name__ == "__main__":
    main()
