"""The README's "Stream in real time" Python example runs verbatim and does what it says."""

import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def section_python(heading: str) -> str:
    """The first ```python block under the README's ``## heading`` (before the next ``## ``)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    blocks = re.findall(r"```python\n(.*?)```", text[start : end if end >= 0 else None], flags=re.S)
    assert blocks, f"no python block under '## {heading}'"
    return blocks[0]


@pytest.mark.slow  # streams 5 s of audio in 10 ms blocks through the bundled causal model
def test_readme_streaming_example_runs_verbatim(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)  # its paths are relative to the repository, as a user runs it
    namespace: dict = {"__name__": "__readme__"}
    previous = torch.get_num_threads()
    try:
        exec(compile(section_python("Stream in real time"), "README.md", "exec"), namespace)
    finally:
        torch.set_num_threads(previous)
    model, mix, est, out = namespace["model"], namespace["mix"], namespace["est"], namespace["out"]
    with torch.no_grad():
        offline = model(mix[0])
    assert est.shape == offline.shape == (model.n_src, mix.shape[-1])
    assert (est - offline).abs().max().item() <= 1e-4  # as the comment says: equal to model(mix[0])
    assert out.shape == (model.n_src, 160)
    assert "algorithmic lat." in capsys.readouterr().out
