"""Every code block of the README is checked, so the README cannot rot.

* Every ```python block runs, from a scratch folder that sees the repository's ``egs/`` (the
  paths a user types), and leaves nothing behind in the repository.
* Every ``audiomask …`` line of a ```bash block parses with the real command-line parser (an
  option renamed in the code fails here); every file it names that should ship exists;
  ``python bench/X.py --opt`` lines use options the script has; ``pip install ".[extras]"``
  names extras that ``pyproject.toml`` defines. The main command and the quick-start
  separation also run for real in ``tests/test_cli.py`` / ``tests/test_pretrained.py``.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from audiomask.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def code_blocks(language: str) -> list[tuple[str, str]]:
    """``(section heading, code)`` of every fenced block in that language, in order."""
    blocks, heading, lang, lines = [], "", None, []
    for line in README.read_text(encoding="utf-8").splitlines():
        if lang is None and line.startswith("## "):
            heading = line[3:].strip()
        if line.startswith("```"):
            if lang is None:
                lang, lines = line[3:].strip(), []
            else:
                if lang == language:
                    blocks.append((heading, "\n".join(lines)))
                lang = None
            continue
        if lang is not None:
            lines.append(line)
    return blocks


PYTHON = code_blocks("python")
BASH = code_blocks("bash")
# Blocks that need a file an earlier bash line of the same section writes: made first.
SETUP = {"Export and serve": [["export", "convtasnet-mini2mix-causal", "--streaming", "--block-ms", "10",
                               "--out", "ctn-stream.onnx", "-q"]]}


def _tracked_state() -> str:
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT,
                          capture_output=True, text=True).stdout


def test_the_readme_has_the_blocks_this_test_knows():
    assert len(PYTHON) >= 6 and len(BASH) >= 10


@pytest.mark.slow  # loads the bundled models, exports one to ONNX
@pytest.mark.parametrize("index", range(len(PYTHON)), ids=[f"{i}-{h.split()[0]}" for i, (h, _) in enumerate(PYTHON)])
def test_python_block_runs(index, tmp_path, monkeypatch):
    heading, code = PYTHON[index]
    (tmp_path / "egs").symlink_to(ROOT / "egs")
    monkeypatch.chdir(tmp_path)
    for argv in SETUP.get(heading, []):
        assert main(argv) == 0
    before = _tracked_state()
    # a fresh interpreter, as a user pastes it; -I keeps the cwd out of sys.path
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            timeout=600, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, f"README block under '## {heading}' failed:\n{code}\n{result.stderr[-3000:]}"
    assert _tracked_state() == before, "the block left files in the repository"


def _commands(code: str) -> list[list[str]]:
    """Shell words of each command line (comments and ``&&`` chains split)."""
    out = []
    for line in code.splitlines():
        line = line.split("  #")[0].strip()
        if not line or line.startswith("#"):
            continue
        for part in line.split("&&"):
            words = shlex.split(part, comments=True)
            while words and "=" in words[0] and not words[0].startswith(("-", ".", "/")):
                words = words[1:]  # ENV=value prefixes
            if words:
                out.append(words)
    return out


ALL_COMMANDS = [(h, w) for h, code in BASH for w in _commands(code)]


def _audiomask_argv(words: list[str]) -> list[str] | None:
    if Path(words[0]).name == "audiomask":
        return words[1:]
    if words[0] == "torchrun" and "-m" in words and words[words.index("-m") + 1] == "audiomask":
        return words[words.index("-m") + 2:]
    return None


AUDIOMASK_LINES = [(h, argv) for h, w in ALL_COMMANDS if (argv := _audiomask_argv(w)) is not None]


@pytest.mark.parametrize("heading, argv", AUDIOMASK_LINES, ids=[" ".join(a[:2]) for _, a in AUDIOMASK_LINES])
def test_audiomask_lines_parse(heading, argv, capsys):
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        pytest.fail(f"README ({heading}): `audiomask {' '.join(argv)}` does not parse: "
                    f"{capsys.readouterr().err.strip()} (exit {e.code})")
    # files the README tells a user are in the checkout must be there
    for word in argv:
        if word.startswith(("egs/", "recipes/", "bench/")) and not word.endswith("/"):
            assert (ROOT / word).exists(), f"README ({heading}) names {word}, which does not exist"
    assert args.command == argv[0]


BENCH_LINES = [(h, w) for h, w in ALL_COMMANDS if w[0].endswith("python") and len(w) > 1
               and w[1].startswith("bench/")]


@pytest.mark.parametrize("heading, words", BENCH_LINES, ids=[w[1] for _, w in BENCH_LINES])
def test_bench_lines_use_existing_options(heading, words):
    script = ROOT / words[1]
    assert script.is_file(), f"README ({heading}) runs {words[1]}, which does not exist"
    helptext = subprocess.run([sys.executable, str(script), "--help"], cwd=ROOT, capture_output=True,
                              text=True, timeout=300).stdout
    for word in words[2:]:
        if word.startswith("--"):
            assert word.split("=")[0] in helptext, f"{words[1]} has no option {word}"


def test_pip_lines_name_defined_extras():
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    named = set()
    for _, words in ALL_COMMANDS:
        for word in words:
            m = re.fullmatch(r"\.?\[([\w,\-]+)\]", word) or re.fullmatch(r"[-\w.]*\[([\w,\-]+)\]", word)
            if m and ("pip" in words[0] or "pip" in " ".join(words[:2])):
                named |= set(m.group(1).split(","))
    assert named and named <= extras, f"README installs undefined extras {named - extras}"


def test_scripts_the_readme_runs_exist():
    for heading, words in ALL_COMMANDS:
        if words[0].startswith(("recipes/", "bench/", "egs/")):
            assert (ROOT / words[0]).exists(), f"README ({heading}) runs {words[0]}, which does not exist"
