"""The package's import graph (issue 25): no import cycles, no module importing one of a
higher layer (``tools/import_graph.py`` defines the layers and counts every import, deferred
ones included)."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _graph_tool():
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "tools" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_import_cycles_and_no_upward_imports():
    tool = _graph_tool()
    known = tool.modules()
    graph = {m: tool.imports(m, p, known) for m, p in known.items()}
    assert len(known) > 80 and sum(map(len, graph.values())) > 200  # the whole package was read
    upward = [(a, b) for a, bs in graph.items() for b in bs if tool.layer(a) < tool.layer(b)]
    assert upward == []
    assert tool.cycles({m: {b for b in bs if not m.startswith(b + ".") and not b.startswith(m + ".")}
                        for m, bs in graph.items()}) == []


def test_the_graph_tool_finds_a_cycle_and_an_upward_import():
    tool = _graph_tool()
    assert tool.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert tool.layer("audiomask.maskers.tcn") < tool.layer("audiomask.models.checkpoint")
    assert tool.layer("audiomask") == len(tool.LAYERS) - 1
