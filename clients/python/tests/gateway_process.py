"""Starting and stopping the gateway binary built in the workspace."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
from collections import deque
from pathlib import Path
from queue import Empty, Queue

import pytest

REPO = Path(__file__).resolve().parents[3]
START_TIMEOUT = 60.0

CONFIG = """
[server]
bind = "127.0.0.1:0"
[database]
url = "sqlite://{folder}/gateway.db?mode=rwc"
"""


def gateway_binary() -> Path:
    """`$STEPFLOW_GATEWAY_BIN`, else the workspace's debug build."""
    path = Path(os.environ.get("STEPFLOW_GATEWAY_BIN")
                or REPO / "target" / "debug" / "stepflow-gateway")
    if not os.access(path, os.X_OK):
        pytest.fail(f"no gateway binary at {path}: run `cargo build` in {REPO} "
                    "or set STEPFLOW_GATEWAY_BIN", pytrace=False)
    return path


class GatewayProcess:
    """One gateway: its folder and config, and its process once started."""

    def __init__(self, binary: Path, extra_config: str = "") -> None:
        """Writes `gateway.toml` (the base config and `extra_config`) in a
        new temporary folder; nothing runs yet."""
        self.binary = binary
        self._folder = tempfile.TemporaryDirectory(prefix="stepflow-pyclient-")
        self.folder = Path(self._folder.name)
        self.config = self.folder / "gateway.toml"
        self.config.write_text(CONFIG.format(folder=self.folder) + extra_config)
        self.process: subprocess.Popen[bytes] | None = None
        self.log: deque[str] = deque(maxlen=200)

    def command(self, *args: str) -> str:
        """Runs a one-off subcommand on this gateway's config (such as
        `issue-key`); its standard output."""
        done = subprocess.run([str(self.binary), *args, "--config", str(self.config)],
                              cwd=self.folder, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{args[0]} failed: {done.stderr}"
        return done.stdout

    def start(self) -> str:
        """Starts `serve` and returns its base URL once it listens."""
        self.process = subprocess.Popen(
            [str(self.binary), "serve", "--log-json", "--config", str(self.config)],
            cwd=self.folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env={**os.environ, "RUST_LOG": "info"})
        address: Queue[str] = Queue()
        threading.Thread(target=self._drain, args=(address,), daemon=True).start()
        try:
            return f"http://{address.get(timeout=START_TIMEOUT)}"
        except Empty:
            self.stop()
            recent = "\n".join(self.log)
            pytest.fail(f"the gateway did not report its address:\n{recent}", pytrace=False)
            raise

    def stop(self) -> None:
        """Stops the process and removes the folder."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=30)
        self._folder.cleanup()

    def _drain(self, address: Queue[str]) -> None:
        """Reads the JSON log until the process ends: passes on the address
        it listens on and keeps the latest lines for failure reports."""
        assert self.process is not None and self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            self.log.append(line)
            try:
                fields = json.loads(line).get("fields", {})
            except (ValueError, AttributeError):
                continue
            if isinstance(fields, dict) and fields.get("local_addr"):
                address.put(fields["local_addr"])
