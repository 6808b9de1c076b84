"""The path of one sample through the package (issue 25): which of audiomask's files run, in
what order, from ``audiomask separate`` until the decoder first runs.

Runs ``audiomask separate`` on a file in-process under ``sys.setprofile``, records every call
into a function defined in the package, collapses consecutive calls within one file, and
stops at the decoder's first call. Prints the files in order, how many distinct files, and
how many times the path comes back to a file it had left (back-and-forth).

    python tools/call_path.py [--model convtasnet-robust16k] [--input egs/quickstart/mix.wav]
    python tools/call_path.py --start ConvTasNet.forward     # the model's part only
    python tools/call_path.py --functions                    # every call, file:function
    python tools/call_path.py --kernels-as-library           # compiled-kernel wrappers left out
"""

from __future__ import annotations

import argparse
import inspect
import sys
import tempfile
from pathlib import Path

from audiomask.separation import DEFAULT_MODEL

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "audiomask"


DECODERS = ("ConvDecoder.", "ISTFTDecoder.")
#: the wrappers of compiled kernels and memory (``--kernels-as-library``): the C kernels, oneDNN's
#: inner product, the Triton kernels and the memory-mapped buffers — called per block by the
#: fused paths the way the modules call torch ops
KERNEL_WRAPPERS = ("audiomask/native/", "audiomask/nn/onednn.py", "kernels/", "audiomask/runtime.py")


class _Stop(Exception):
    pass


def trace(model: str, wav: str, start: str = "cmd_separate", functions: bool = False,
          skip: tuple[str, ...] = ()) -> list[str]:
    """The files (relative to the repository) that run, collapsed, until the decoder first
    runs (a method of a decoder class, or a model's ``decode``)."""
    import audiomask  # noqa: F401  (imports happen before tracing)
    from audiomask.cli import main

    files: list[str] = []
    started: list[bool] = []
    kernels = str(ROOT / "kernels")

    def profile(frame, event, arg):
        if event != "call":
            return
        name = frame.f_code.co_filename
        if not (name.startswith(str(PACKAGE)) or name.startswith(kernels)):
            return
        rel = str(Path(name).resolve().relative_to(ROOT))
        if rel.startswith(skip):
            return
        qualname = frame.f_code.co_qualname
        if qualname == start:
            started.append(True)
        if not started or not frame.f_code.co_flags & inspect.CO_OPTIMIZED or qualname.endswith("__init_subclass__"):
            return  # before the command runs; module and class bodies (imports)
        if (qualname.startswith(DECODERS) and not qualname.endswith("__init__")) or qualname.endswith(".decode"):
            files.append(rel)
            raise _Stop
        if functions:
            files.append(f"{rel}:{qualname}")
        elif not files or files[-1] != rel:
            files.append(rel)

    with tempfile.TemporaryDirectory() as out:
        sys.setprofile(profile)
        try:
            main(["separate", wav, "--model", model, "--out", out, "--quiet", "--threads", "1"])
        except _Stop:
            pass
        finally:
            sys.setprofile(None)
    return files


def summarize(files: list[str]) -> tuple[int, int, int]:
    """(distinct files, returns to a file already left, alternations). A return is any visit
    to a file the path had left — mostly a composer taking control back (the model's
    ``forward`` after its encoder ran). An alternation is a pair of files visited A, B, A, B in
    a row: one file calling back and forth into another, as a loop over blocks does when its
    body lives in two files."""
    seen, back = set(), 0
    for i, f in enumerate(files):
        if f in seen and files[i - 1] != f:
            back += 1
        seen.add(f)
    alternations = sum(files[i] == files[i + 2] and files[i + 1] == files[i + 3] for i in range(len(files) - 3))
    return len(seen), back, alternations


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--input", default=str(ROOT / "egs" / "quickstart" / "mix.wav"))
    ap.add_argument("--start", default="cmd_separate",
                    help="qualified name of the function the path starts at, e.g. ConvTasNet.forward "
                         "(the separation alone, after loading and file handling)")
    ap.add_argument("--functions", action="store_true",
                    help="list every call (file:function) instead of the collapsed files")
    ap.add_argument("--kernels-as-library", action="store_true",
                    help="leave out the files of KERNEL_WRAPPERS, as calls into torch are left out")
    args = ap.parse_args()
    files = trace(args.model, args.input, args.start, args.functions,
                  KERNEL_WRAPPERS if args.kernels_as_library else ())
    for f in files:
        print(f"  {f}")
    collapsed = [f for i, f in enumerate(f.split(":")[0] for f in files) if i == 0 or f != files[i - 1].split(":")[0]]
    distinct, back, alternations = summarize(collapsed)
    print(f"{distinct} files, {len(files)} visits, {back} returns to a file already left, "
          f"{alternations} alternations (A, B, A, B)")


if __name__ == "__main__":
    main()
