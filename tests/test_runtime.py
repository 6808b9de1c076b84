"""Process-level settings (audiomask.runtime), checked in child processes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CODE = "import audiomask; print(audiomask.tune_allocator(), audiomask.tune_allocator())"


def run(env_value: str | None) -> str:
    env = dict(os.environ)
    env.pop("AUDIOMASK_TUNE_MALLOC", None)
    if env_value is not None:
        env["AUDIOMASK_TUNE_MALLOC"] = env_value
    return subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_tune_allocator_applies_once_and_can_be_disabled():
    assert run(None) == "True True"
    assert run("0") == "False False"
