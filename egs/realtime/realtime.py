"""Real-time separation with the bundled causal model.

Without a sound card (default): the bundled example is fed block by block, exactly as an
audio callback would deliver it, through ``audiomask.Stream``; the separated sources are
written to ``out/`` and the latency report is printed.

With ``--mic`` (needs ``pip install 'audiomask[stream]'`` and ``apt-get install libportaudio2``):
the default microphone is separated live; source 1 plays on the left channel, source 2 on
the right.

    python egs/realtime/realtime.py                 # simulation
    python egs/realtime/realtime.py --mic --seconds 20
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import audiomask
from audiomask.audio import read_audio, write_audio
from audiomask.cli import DEFAULT_CAUSAL_MODEL

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "quickstart" / "mix.wav"


def simulate_sound_card(model: torch.nn.Module, block: int, out: Path) -> None:
    mix, _ = read_audio(EXAMPLE, sample_rate=model.sample_rate, channels=1)
    x = mix[0].numpy()
    received = []
    out_block = np.zeros((model.n_src, block), dtype=np.float32)  # reused: no allocation per callback
    with audiomask.Stream(model, block_size=block) as stream:
        for start in range(0, len(x) - block + 1, block):
            stream.push(x[start : start + block])  # what an input callback does
            time.sleep(block / model.sample_rate)  # the sound card's pace
            stream.pull(block, out_block)  # what an output callback does
            received.append(out_block.copy())
    est = np.concatenate(received, axis=-1)
    for i, source in enumerate(est, 1):
        print(write_audio(out / f"realtime_s{i}.wav", source, model.sample_rate))
    print(stream.report())


def microphone(model: torch.nn.Module, block: int, seconds: float) -> None:
    import sounddevice as sd

    with audiomask.Stream(model, block_size=block) as stream, \
            sd.Stream(samplerate=model.sample_rate, blocksize=block, channels=(1, model.n_src),
                      dtype="float32", callback=stream.callback):
        time.sleep(seconds)
    print(stream.report())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=DEFAULT_CAUSAL_MODEL)
    p.add_argument("--block-ms", type=float, default=10.0)
    p.add_argument("--mic", action="store_true")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--out", type=Path, default=Path("out"))
    args = p.parse_args()
    torch.set_num_threads(2)
    model = audiomask.load(args.model)
    block = round(args.block_ms * model.sample_rate / 1000)
    if args.mic:
        microphone(model, block, args.seconds)
    else:
        simulate_sound_card(model, block, args.out)


if __name__ == "__main__":
    main()
