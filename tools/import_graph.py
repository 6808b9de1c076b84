"""Import-graph measures of the ``audiomask`` package (issue 25): cycles, upward imports.

Every ``import`` in every module counts, at module level or inside a function (an import
deferred into a function still ties the two modules together). Units are the package's
modules; each unit has a layer (``LAYERS``, lowest first), and an import from a lower layer
to a higher one is an upward import.

    python tools/import_graph.py            # summary; --edges lists every arrow
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "audiomask"

# lowest first; a module's layer is that of the longest name listed here equal to it or a package
# above it ("audiomask" is the package's own __init__ only)
LAYERS = [
    ["audiomask.accel", "audiomask.fileio", "audiomask.runtime", "audiomask.native", "audiomask.state_dicts"],
    ["audiomask.audio", "audiomask.metrics", "audiomask.nn", "audiomask.kernels", "audiomask.filterbanks"],
    # the streaming protocol and sessions fold any model's init_state/step/flush: below the models
    ["audiomask.maskers", "audiomask.losses", "audiomask.macs", "audiomask.streaming"],
    ["audiomask.models"],
    ["audiomask.interop", "audiomask.published", "audiomask.hub", "audiomask.loading", "audiomask.data"],
    ["audiomask.separation", "audiomask.tasks", "audiomask.cli.common", "audiomask.echo_cancellation", "audiomask.outputs",
     "audiomask.evaluate", "audiomask.plot"],
    ["audiomask.training", "audiomask.export", "audiomask.corpora"],
    ["audiomask.serve", "audiomask.cli", "audiomask.__main__", "audiomask"],
]


def modules() -> dict[str, Path]:
    """``{dotted name: file}``; the top-level ``kernels/`` folder is ``audiomask.kernels``
    (``setup.py`` maps it into the package)."""
    out = {}
    files = [(p, p.relative_to(ROOT.parent)) for p in sorted(ROOT.rglob("*.py"))]
    files += [(p, Path("audiomask") / p.relative_to(ROOT.parent)) for p in sorted((ROOT.parent / "kernels").rglob("*.py"))]
    for path, rel in files:
        rel = rel.with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def resolve(name: str, known: dict[str, Path]) -> str | None:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports(mod: str, path: Path, known: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for name in names:
            if name.startswith("audiomask"):
                target = resolve(name, known)
                # "from pkg import sub" names the submodule, "from pkg import func" the package
                if target and target != mod and not mod.startswith(target + "."):
                    found.add(target)
    return found


def layer(mod: str) -> int:
    best, depth = None, -1
    for i, names in enumerate(LAYERS):
        for name in names:
            prefix = name != "audiomask" and mod.startswith(name + ".")  # the package itself: no prefix
            if (mod == name or prefix) and len(name) > depth:
                best, depth = i, len(name)
    if best is None:
        raise SystemExit(f"tools/import_graph.py: {mod} has no layer in LAYERS")
    return best


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--edges", action="store_true", help="list every import arrow")
    args = ap.parse_args()
    known = modules()
    graph = {m: imports(m, p, known) for m, p in known.items()}
    # a package's __init__ re-exporting its own modules is not an arrow between units
    arrows = [(a, b) for a, bs in graph.items() for b in sorted(bs)]
    up = [(a, b) for a, b in arrows if layer(a) < layer(b)]
    cyc = cycles({m: {b for b in bs if not m.startswith(b + ".") and not b.startswith(m + ".")}
                  for m, bs in graph.items()})
    print(f"modules {len(known)}, layers {len(LAYERS)}, import arrows {len(arrows)}, "
          f"upward imports {len(up)}, import cycles {len(cyc)}")
    for a, b in up:
        print(f"  upward: {a} (layer {layer(a)}) -> {b} (layer {layer(b)})")
    for c in cyc:
        print(f"  cycle: {' <-> '.join(c)}")
    if args.edges:
        for a, b in arrows:
            print(f"{a} -> {b}")


if __name__ == "__main__":
    main()
