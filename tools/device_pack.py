"""Pack what a training run on a lent GPU needs into one ignored folder, ``.device/``.

A lent GPU machine gets a copy of the working tree (at most 64 MiB, carried folders included)
and nothing of ``../shared``; the project is about 27 MB and ``librispeech-mini`` 55 MB. This
packs, with the held-out speakers left behind:

* ``speech/`` — the training speakers only (the 25 that every recipe and ``bench/quality.py``
  hold out, ``split_by_speaker(…, 25, seed=0)``, are not copied), as Ogg Vorbis at quality 0.9
  (about half of FLAC's size; a waveform SNR of about 28 dB against the FLAC, far above what
  the models reach, so the references stay clean for training purposes);
* ``noise/`` — the real noise recordings, as Ogg Vorbis (the recipes' ``noise_split`` still
  keeps each one's last quarter for validation);
* ``rir/`` — the measured room responses, as they are;
* ``whl/`` — wheels the GPU image lacks (soundfile, soxr, cffi, pycparser, pyroomacoustics;
  CPython 3.12, manylinux x86-64), downloaded from the package registry;
* ``train.sh`` — the command to run there (below).

    python tools/device_pack.py                 # writes .device/ and prints its size

then, with the ``device`` tool (one call; ``carry: [".device"]``, ``timeout_s`` 600)::

    bash .device/train.sh 480 egs/robust16k/conf.yaml model.init_from=convtasnet-robust16k \\
        optim.batch_size=16 data.segment=4.0 optim.steps=4000 optim.lr=2e-4

``train.sh SECONDS CONFIG [key=value …]`` installs the wheels where their packages are
missing, makes the package importable from the tree, and trains CONFIG on the GPU
(``run.device=auto``, bf16) into ``$OUT/run``, checkpointing as it goes and stopping cleanly
(SIGTERM: a checkpoint after the current step) after SECONDS, so the weights come back even when
the call is near its limit (``state.pt``, the optimizer, is over the 16 MiB a returned file may
have for Conv-TasNet-sized models: a later run starts from the weights with ``model.init_from``). Validation there runs on 5 of the carried (training) speakers; the
held-out measure is ``bench/quality.py`` back here.

``bench.sh SECONDS STEP…`` runs issue 23's GPU checks within SECONDS, writing into ``$OUT`` as it
goes: ``tests`` (``tests/test_kernels.py`` on the GPU), ``kernels`` (``bench/kernels.py``, the
speed rows), ``memory`` (``bench/memory.py``: 60 min of audio through each architecture, and
the D3Net-AEC peak per second of audio), e.g. ``bash .device/bench.sh 540 tests kernels`` in
one call and ``bash .device/bench.sh 540 memory`` in the next.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import soundfile as sf
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
WHEELS = ("soundfile==0.14.0", "soxr==1.1.0", "cffi==2.1.1", "pycparser==3.12", "pyroomacoustics==0.10.1")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")
#: the tree a device call carries, at most
LIMIT = 64 * 2**20

TRAIN_SH = r"""#!/bin/bash
# bash .device/train.sh SECONDS CONFIG [key=value ...]   (written by tools/device_pack.py)
set -euo pipefail
secs=$1; cfg=$2; shift 2
D=$PWD/.device
python3 -c "import soundfile, soxr, pyroomacoustics" 2>/dev/null || {
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$D"/whl/*.whl
  export PYTHONPATH=/tmp/site; }
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
[ -e audiomask/kernels ] || ln -s ../kernels audiomask/kernels   # as setup.py maps it
nvidia-smi -L || true
mkdir -p "$OUT/run"
timeout -s TERM "$secs" python3 -m audiomask train "$cfg" data.speech_dir="$D/speech" data.noise_dir="$D/noise" \
  data.rir_dir="$D/rir" data.valid_speakers=5 data.num_workers=12 run.device=auto run.amp=bf16 \
  run.out_dir="$OUT/run" "$@" 2>&1 | tr '\r' '\n' | grep -v '^ *$' | tee "$OUT/train.log" \
  | awk '!/^validate:/ && (NR % 200 == 1 || /SIGTERM|rror|best|SI-SDR/)' || true
ls -la "$OUT/run"
"""

BENCH_SH = r"""#!/bin/bash
# bash .device/bench.sh SECONDS STEP [STEP ...]   (written by tools/device_pack.py)
# STEP: tests (tests/test_kernels.py on the GPU), kernels (bench/kernels.py), memory (bench/memory.py,
# 60 min of audio per architecture). Each step gets what is left of SECONDS; rows land in $OUT as they come.
set -uo pipefail
secs=$1; shift
D=$PWD/.device
end=$(( $(date +%s) + secs ))
python3 -c "import soundfile, soxr" 2>/dev/null || {
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$D"/whl/*.whl
  export PYTHONPATH=/tmp/site; }
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
[ -e audiomask/kernels ] || ln -s ../kernels audiomask/kernels
gpu=$(python3 -c "import torch; print(torch.cuda.get_device_name().split()[-1].lower())" 2>/dev/null || echo cpu)
nvidia-smi -L || true
for step in "$@"; do
  left=$(( end - $(date +%s) )); [ "$left" -gt 20 ] || { echo "no time left for $step"; break; }
  case $step in
    tests)   timeout -s TERM "$left" python3 -m pytest -q -p no:cacheprovider tests/test_kernels.py 2>&1 | tail -30 | tee "$OUT/tests-$gpu.log" ;;
    kernels) timeout -s TERM "$left" python3 bench/kernels.py --json "$OUT/kernels-$gpu.json" 2>&1 | tee "$OUT/kernels-$gpu.log" ;;
    memory)  timeout -s TERM "$left" python3 bench/memory.py --json "$OUT/memory-$gpu.json" 2>&1 | tee "$OUT/memory-$gpu.log" ;;
    *) echo "unknown step $step (tests, kernels, memory)" ;;
  esac
done
"""


def encode(src: Path, dst: Path) -> None:
    """``src`` as Ogg Vorbis at quality 0.9 in ``dst``."""
    audio, rate = sf.read(src, dtype="float32")
    sf.write(dst, audio, rate, format="OGG", subtype="VORBIS", compression_level=0.1)


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def tree_size() -> int:
    """Bytes of the files git tracks (what every device call carries besides ``.device``)."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    return sum((ROOT / f.decode()).stat().st_size for f in files if f and (ROOT / f.decode()).is_file())


def main() -> None:
    from audiomask.data.speakers import find_audio, split_by_speaker

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA, help="the shared data folder (default ../shared/data)")
    ap.add_argument("--out", type=Path, default=ROOT / ".device", help="the folder to write (default .device)")
    ap.add_argument("--no-wheels", action="store_true", help="skip downloading the wheels")
    args = ap.parse_args()
    if args.out.exists() and any(args.out.iterdir()):
        sys.exit(f"{args.out}: exists and is not empty; remove it first")
    train, valid = split_by_speaker(find_audio(args.data / "librispeech-mini"), 25, seed=0)
    for name in ("speech", "noise", "rir"):
        (args.out / name).mkdir(parents=True, exist_ok=True)
    for f in tqdm(train, desc="speech", unit="file"):
        encode(f, args.out / "speech" / (f.stem + ".ogg"))
    for f in find_audio(args.data / "noise"):
        encode(f, args.out / "noise" / (f.stem + ".ogg"))
    for f in find_audio(args.data / "rir"):
        shutil.copy2(f, args.out / "rir" / f.name)
    if not args.no_wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        "--python-version", "3.12", "--implementation", "cp",
                        *[a for p in PLATFORMS for a in ("--platform", p)], "-d", str(args.out / "whl"), *WHEELS],
                       check=True)
    (args.out / "train.sh").write_text(TRAIN_SH)
    (args.out / "bench.sh").write_text(BENCH_SH)
    packed, tracked = folder_size(args.out), tree_size()
    print(f"{args.out}: {len(train)} training files ({len(valid)} held out, not copied), "
          f"{packed / 2**20:.1f} MiB; with the tracked tree {(packed + tracked) / 2**20:.1f} MiB "
          f"of the {LIMIT / 2**20:.0f} MiB a device call carries")
    if packed + tracked > LIMIT:
        sys.exit("too large to carry: drop files from .device/speech")


if __name__ == "__main__":
    main()
