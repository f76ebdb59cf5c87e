"""The exception raised for everything the gateway refuses."""

from __future__ import annotations

import json
from typing import Any


class StepFlowError(Exception):
    """A refusal from the gateway, carrying its RFC 9457 problem document.

    The gateway answers every refusal with `application/problem+json`; its
    fields are copied onto the error so that callers can branch on them
    without digging into the body:

    - `status`: the HTTP status (422, 404, ...).
    - `type`: `urn:stepflow:problem:<kind>`, such as `...:validation`.
    - `title`, `detail`: what went wrong, in words.
    - `errors`: the individual problems (schema violations, document
      diagnostics), each with a JSON `pointer`, a `message` and often a
      `rule`; empty when the problem has none.
    - `parameter`: the channel parameter at fault, when one is.
    - `call_log_id`: the call-log record of a refused publish.
    - `problem`: the whole parsed body, or `{}` when it was not JSON.
    """

    def __init__(self, status: int, problem: dict[str, Any] | None = None,
                 detail: str | None = None) -> None:
        """Builds the error of a reply with `status` and body `problem`;
        `detail` stands in when the problem has no `detail` of its own."""
        self.status = status
        self.problem: dict[str, Any] = dict(problem or {})
        self.type: str | None = self.problem.get("type")
        self.title: str | None = self.problem.get("title")
        self.detail: str | None = self.problem.get("detail") or detail
        self.errors: list[dict[str, Any]] = list(self.problem.get("errors") or [])
        self.parameter: str | None = self.problem.get("parameter")
        self.call_log_id: str | None = self.problem.get("call_log_id")
        super().__init__(self._summary())

    def __reduce__(self) -> tuple[type[StepFlowError], tuple[int, dict[str, Any], str | None]]:
        """Keeps the error picklable (for multiprocessing, test runners)
        although its constructor takes more than a message."""
        return (type(self), (self.status, self.problem, self.detail))

    def _summary(self) -> str:
        """Status and detail, then the first individual problem, which is
        usually the one to fix: `422 payload does not match ... (/temperature:
        "hot" is not of type "number")`."""
        text = f"{self.status} {self.detail or self.title or 'request refused'}"
        if self.errors:
            first = self.errors[0]
            text += f" ({first.get('pointer', '')}: {first.get('message', '')})"
        return text

    @classmethod
    def from_reply(cls, status: int, body: bytes | bytearray) -> StepFlowError:
        """The error of a reply with `status` whose raw body is `body`.

        A body that is not a JSON object (a proxy's HTML page, say) leaves
        `problem` empty and becomes the `detail`, so the message still says
        what came back."""
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            return cls(status, parsed)
        text = bytes(body).decode("utf-8", "replace").strip()[:500]
        return cls(status, {}, detail=text or None)
