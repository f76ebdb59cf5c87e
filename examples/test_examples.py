"""Each example runs end to end against the machine's brokers and exits 0
only when everything it drove was delivered."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent


@pytest.mark.parametrize("name", ["iot", "notifications", "orders", "request-reply"])
def test_example_runs_and_delivers_everything(name: str) -> None:
    script = EXAMPLES / name / "run.py"
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=240)
    print(done.stdout)
    print(done.stderr, file=sys.stderr)
    assert done.returncode == 0, f"{name} failed:\n{done.stdout}\n{done.stderr}"
    assert "example:" in done.stdout.splitlines()[-1]
