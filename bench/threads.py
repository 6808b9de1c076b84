"""Thread counts on an idle and on a loaded machine (issue 26 item 1).

Runs the ``audiomask`` command as a user would, in a fresh process per row:

* ``separate`` on a ``--seconds`` long two-speaker mixture (bundled non-causal model): wall time
  of the whole command (start-up included);
* ``stream --input`` on the bundled quickstart mixture with 10 ms blocks (bundled causal model):
  real-time factor and deadline misses, from the command's own report;

each with ``--threads 1`` and ``--threads <all cores>``, and the count the default
(``runtime.choose_threads``) picks under the same load,
first on the machine as it is ("idle"), then with one busy-loop process per core running
("loaded": a machine doing something else). ``OMP_NUM_THREADS`` is removed from the children's
environment so the default policy decides. Results: ``bench/results/threads.json`` and ``.md``.

    python bench/threads.py [--seconds 8]
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


def run(args: list[str], timeout: float = 120.0) -> tuple[float, str]:
    """Run ``audiomask ARGS``; raises ``subprocess.TimeoutExpired`` after ``timeout`` s."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "audiomask", *args], capture_output=True, text=True, env=env,
                         timeout=timeout)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return wall, out.stdout


def time_command(command: str, mix: Path, work: Path, threads: int) -> dict:
    """``separate``: wall time of the command; ``stream``: its real-time factor and misses
    (a run stopped after 120 s is recorded as such)."""
    try:
        return _time_command(command, mix, work, threads)
    except subprocess.TimeoutExpired:
        return {"stopped_after_s": 120.0}


def _time_command(command: str, mix: Path, work: Path, threads: int) -> dict:
    if command == "separate":
        wall, _ = run(["separate", str(mix), "--out", str(work / "sep"), "--overwrite", "-q",
                       "--threads", str(threads)])
        return {"wall_s": round(wall, 2)}
    _, out = run(["stream", "--input", str(QUICKSTART / "mix.wav"), "--block-ms", "10",
                  "--out", str(work / "stream"), "--threads", str(threads)])
    misses = re.search(r"deadline misses\s+(\d+)", out).group(1)
    blocks = re.search(r"over (\d+) blocks", out).group(1)
    return {"rtf": float(re.search(r"real-time factor\s+([\d.]+)", out).group(1)), "misses": f"{misses}/{blocks}"}


def measure(condition: str, mix: Path, work: Path, cores: int) -> list[dict]:
    """Rows for 1 thread, all cores, and the default (the count the policy picks now; measured
    again only when it is neither)."""
    sys.path.insert(0, str(ROOT))
    from audiomask.runtime import choose_threads

    os.environ.pop("OMP_NUM_THREADS", None)
    rows = []
    for command, kind, block_ms in (("separate", "batch", None), ("stream 10 ms", "stream", 10.0)):
        measured = {}
        for label, n in [("1", 1), (str(cores), cores), ("default", choose_threads(None, kind, block_ms=block_ms))]:
            if n not in measured:
                measured[n] = time_command(command.split()[0], mix, work, n)
            rows.append({"condition": condition, "command": command, "threads": label, "chosen": n,
                         **measured[n], "load_1min": round(os.getloadavg()[0], 2)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="length of the separated mixture")
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
    Path(args.out).with_suffix(".md").write_text(f"# bench/threads.py, {time.strftime('%Y-%m-%d')}\n\n"
                                                 f"{table(result)}\n")
    print("\n" + table(result))


def table(result: dict) -> str:
    """The results as a Markdown table."""
    lines = ["| condition | command | --threads | threads used | wall s | RTF | deadline misses | load (1 min) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        stopped = f"stopped after {r['stopped_after_s']:.0f} s" if "stopped_after_s" in r else ""
        lines.append(f"| {r['condition']} | {r['command']} | {r['threads']} | {r['chosen']} | "
                     f"{r.get('wall_s', '')} | {r.get('rtf', stopped)} | {r.get('misses', '')} | {r['load_1min']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
