"""Rebuild the bundled example: 5 s of two validation speakers (never used in training)
from ../shared/data/librispeech-mini, mixed at 0 dB, 16 kHz.

    python egs/quickstart/make_example.py
"""

from pathlib import Path

import numpy as np
import soundfile as sf

HERE = Path(__file__).resolve().parent
LIBRI = HERE.parents[2] / "shared" / "data" / "librispeech-mini"
SPEAKERS = ["1235-135883-0000.flac", "1963-142393-0000.flac"]  # M and F, validation speakers
START, SECONDS = 0.5, 5.0


def main() -> None:
    sources = []
    for name in SPEAKERS:
        wav, rate = sf.read(LIBRI / name, dtype="float64")
        seg = wav[int(START * rate) : int((START + SECONDS) * rate)]
        sources.append(seg / np.sqrt(np.mean(seg**2)))
    src = np.stack(sources)
    src *= 0.8 / np.abs(src.sum(0)).max()
    for i, s in enumerate(src, 1):
        sf.write(HERE / f"s{i}.wav", s, rate, subtype="PCM_16")
    sf.write(HERE / "mix.wav", sf.read(HERE / "s1.wav")[0] + sf.read(HERE / "s2.wav")[0], rate,
             subtype="FLOAT")


if __name__ == "__main__":
    main()
