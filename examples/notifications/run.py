"""Real-time notifications: a backend publishes over REST; a browser page,
served here from its own origin, receives them over WebSocket and over
SSE in a real headless Chromium, and reports what it got back to this
script. A notification for another user must not reach the page. Exits
non-zero when the page missed a notification on either front."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from stepflow_gateway import StepFlowGateway  # noqa: E402
from support import Children, fail, free_port  # noqa: E402

NOTIFICATIONS = [
    {"title": "Welcome", "body": "Your account is ready", "level": "info"},
    {"title": "Disk almost full", "body": "92% used on /data", "level": "warning"},
    {"title": "Payment failed", "body": "Card declined", "level": "alert"},
]


class Page:
    """The page's own web server: serves page.html and takes its reports."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.received: dict[str, list[dict]] = {"ws": [], "sse": []}
        self.changed = threading.Condition()
        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        page = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = (HERE / "page.html").read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                report = json.loads(self.rfile.read(length) or b"{}")
                if self.path == "/ready":
                    page.ready.set()
                elif self.path == "/received":
                    with page.changed:
                        page.received = report
                        page.changed.notify_all()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        return Handler

    def wait_for(self, count: int, seconds: float) -> dict[str, list[dict]]:
        """What the page received, once both fronts have `count` messages
        or after `seconds`."""
        with self.changed:
            self.changed.wait_for(
                lambda: all(len(v) >= count for v in self.received.values()), seconds)
            return self.received


def chromium(url: str, profile: Path) -> subprocess.Popen[bytes]:
    """A headless Chromium showing `url`."""
    binary = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which(
        "chromium-browser")
    if binary is None:
        fail("no Chromium: apt-get install chromium")
    return subprocess.Popen(
        [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={profile}", url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def backend(gateway: StepFlowGateway, channel: str) -> None:
    """Sends the page's user its notifications, and one to someone else."""
    await gateway.publish_message(
        channel, {"title": "Not for the page", "level": "info"}, parameters={"userId": "bob"})
    for notification in NOTIFICATIONS:
        await gateway.publish_message(channel, notification, parameters={"userId": "alice"})


def main() -> None:
    page = Page()
    with Children() as children:
        config = (HERE / "gateway.toml").read_text().replace("@PAGE_ORIGIN@", page.origin)
        config = config.replace("@HERE@", str(HERE)).replace("@DATA@", str(children.data))
        base_url = children.gateway(config)
        with StepFlowGateway(base_url) as gateway:
            channel = gateway.list_channels()[0]["id"]
            query = urlencode({"gateway": base_url, "channel": channel, "user": "alice"})
            browser = chromium(f"{page.origin}/page.html?{query}", children.data / "chromium")
            children.processes.append(browser)
            if not page.ready.wait(60):
                fail("the page did not subscribe over both WebSocket and SSE within 60 s")
            print(f"page at {page.origin} subscribed to {base_url} over WebSocket and SSE")
            asyncio.run(backend(gateway, channel))
            received = page.wait_for(len(NOTIFICATIONS), 30)
    page.server.shutdown()
    for front, messages in received.items():
        titles = [m["title"] for m in messages]
        print(f"{front}: {titles}")
        if titles != [n["title"] for n in NOTIFICATIONS]:
            fail(f"the page got {titles} over {front}")
    print("notifications example: the page received every notification over both fronts")


if __name__ == "__main__":
    main()
