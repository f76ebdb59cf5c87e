"""A gateway for the whole test run, started from the workspace's build."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "examples"))

from support import Children  # noqa: E402

CONFIG = """
[server]
bind = "127.0.0.1:0"
[database]
url = "sqlite://{data}/gateway.db?mode=rwc"
"""


@pytest.fixture(scope="session")
def base_url() -> Iterator[str]:
    with Children() as children:
        yield children.gateway(CONFIG.format(data=children.data))
