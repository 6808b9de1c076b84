"""Thread counts on an idle and on a loaded machine (issue 26 item 1).

Runs the ``audiomask`` command as a user would, in a fresh process per row:

* ``separate`` on a ``--seconds`` long two-speaker mixture (bundled non-causal model): wall time;
* ``stream --input`` on the bundled quickstart mixture with 10 ms blocks (bundled causal model):
  real-time factor and deadline misses, from the command's own report;

each with ``--threads 1``, ``--threads <all cores>`` and the default (``runtime.choose_threads``),
first on the machine as it is ("idle"), then with one busy-loop process per core running
("loaded": a machine doing something else). ``OMP_NUM_THREADS`` is removed from the children's
environment so the default policy decides. Results: ``bench/results/threads.json`` and a table.

    python bench/threads.py [--seconds 15]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "egs" / "quickstart"


def busy_loop(stop: mp.Event) -> None:
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def long_mixture(path: Path, seconds: float) -> Path:
    """The quickstart mixture repeated to ``seconds`` (16 kHz)."""
    mix, rate = sf.read(QUICKSTART / "mix.wav", dtype="float32")
    reps = int(np.ceil(seconds * rate / len(mix)))
    sf.write(path, np.tile(mix, reps)[: int(seconds * rate)], rate, subtype="FLOAT")
    return path


def run(args: list[str]) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "audiomask", *args], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return wall, out.stdout


def measure(condition: str, mix: Path, work: Path, cores: int) -> list[dict]:
    sys.path.insert(0, str(ROOT))
    from audiomask.runtime import choose_threads

    os.environ.pop("OMP_NUM_THREADS", None)
    rows = []
    for threads in ("1", str(cores), "default"):
        chosen = choose_threads(None, "batch") if threads == "default" else int(threads)
        extra = [] if threads == "default" else ["--threads", threads]
        wall, _ = run(["separate", str(mix), "--out", str(work / "sep"), "--overwrite", "-q", *extra])
        rows.append({"condition": condition, "command": "separate", "threads": threads, "chosen": chosen,
                     "wall_s": round(wall, 2), "load_1min": round(os.getloadavg()[0], 2)})
        print(rows[-1], flush=True)
    for threads in ("1", str(cores), "default"):
        chosen = choose_threads(None, "stream", block_ms=10) if threads == "default" else int(threads)
        extra = [] if threads == "default" else ["--threads", threads]
        _, out = run(["stream", "--input", str(QUICKSTART / "mix.wav"), "--block-ms", "10",
                      "--out", str(work / "stream"), *extra])
        rtf = float(re.search(r"real-time factor\s+([\d.]+)", out).group(1))
        misses = int(re.search(r"deadline misses\s+(\d+)", out).group(1))
        blocks = int(re.search(r"over (\d+) blocks", out).group(1))
        rows.append({"condition": condition, "command": "stream 10 ms", "threads": threads, "chosen": chosen,
                     "rtf": rtf, "misses": f"{misses}/{blocks}", "load_1min": round(os.getloadavg()[0], 2)})
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="length of the separated mixture")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "threads.json"))
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        mix = long_mixture(work / "long.wav", args.seconds)
        rows += measure("idle", mix, work, cores)
        stop = mp.Event()
        loaders = [mp.Process(target=busy_loop, args=(stop,), daemon=True) for _ in range(cores)]
        for p in loaders:
            p.start()
        try:
            time.sleep(2)
            rows += measure(f"loaded ({cores} busy loops)", mix, work, cores)
        finally:
            stop.set()
            for p in loaders:
                p.join()
    result = {"cores": cores, "seconds": args.seconds, "python": sys.version.split()[0], "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{'condition':<24}{'command':<16}{'--threads':<11}{'used':>5}{'wall s':>8}{'RTF':>8}  misses")
    for r in rows:
        print(f"{r['condition']:<24}{r['command']:<16}{r['threads']:<11}{r['chosen']:>5}"
              f"{r.get('wall_s', ''):>8}{r.get('rtf') or '':>8}  {r.get('misses') or ''}")


if __name__ == "__main__":
    main()
