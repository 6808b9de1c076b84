"""Rebuild the bundled echo-cancellation example: one 6 s double-talk scene of two held-out
speakers (never used in training) from ../shared/data, 16 kHz — `mic.wav` (near-end talker +
echo of the far end through a measured room response + real noise), `far.wav` (the loudspeaker
signal) and `near.wav` (the near-end talker alone, the reference).

    python egs/aec/example/make_example.py
"""

from pathlib import Path

import soundfile as sf

from audiomask.data import EchoSimulationDataset, find_audio, split_by_speaker

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[3] / "shared" / "data"
SCENE = 3  # a double-talk scene at about 0 dB signal-to-echo ratio


def main() -> None:
    _, valid = split_by_speaker(find_audio(DATA / "librispeech-mini"), 25, seed=0)
    scenes = EchoSimulationDataset(valid, 16000, 6.0, length=10, seed=7, rir_files=DATA / "rir",
                                   noise_files=DATA / "noise", noise_prob=1.0, snr_db=(25.0, 25.0),
                                   ser_db=(-5.0, 5.0), delay_ms=(20.0, 80.0), scenario_probs=(1, 0, 0))
    mic, far, targets, meta = scenes.draw(SCENE, with_meta=True)
    for name, wav in (("mic", mic), ("far", far), ("near", targets[0])):
        sf.write(HERE / f"{name}.wav", wav.numpy(), 16000, subtype="PCM_16")
    print(f"speakers {meta['speakers']}, SER {meta['ser_db']:.1f} dB, delay {meta['delay_samples']} samples")


if __name__ == "__main__":
    main()
