"""The one exception type for everything the gateway refuses."""

from __future__ import annotations

import json
from typing import Any


class StepFlowError(Exception):
    """A refusal from the gateway, with the fields of its problem document
    (RFC 9457): `status`, `type`, `title`, `detail`, `errors` (each with a
    JSON `pointer` and a `message`), `parameter` and `call_log_id`."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        self.type: str | None = problem.get("type")
        self.title: str | None = problem.get("title")
        self.detail: str | None = problem.get("detail")
        self.errors: list[dict[str, Any]] = list(problem.get("errors") or [])
        self.parameter: str | None = problem.get("parameter")
        self.call_log_id: str | None = problem.get("call_log_id")
        super().__init__(self._describe())

    def _describe(self) -> str:
        text = f"{self.status} {self.detail or self.title or 'request refused'}"
        if self.errors:
            first = self.errors[0]
            text += f" ({first.get('pointer', '')}: {first.get('message', '')})"
        return text

    @classmethod
    def from_body(cls, status: int, body: bytes) -> StepFlowError:
        """The error of a reply with `status` whose body is `body`."""
        try:
            problem = json.loads(body) if body else {}
        except ValueError:
            problem = {"detail": body.decode("utf-8", "replace")[:500]}
        return cls(status, problem if isinstance(problem, dict) else {})
