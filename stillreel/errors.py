"""stillreel's one error model: what went wrong, and how it looks on fal's wire.

```
StillreelError(message, error_type, loc, status)   a request that cannot be served
├── EngineError        raised by the engines and media (``loc`` = the normalized request's attribute)
│   └── InputError     an invalid input: ``detail`` is fal's 422 list, already under fal's field names
└── OptionsError       an engine option is missing, unknown or invalid (a configuration error)
```

A raised error reaches the client through one FastAPI handler (``stillreel.api.app``), and a
request that ended badly is stored as one ``Failure`` (``to_row`` writes it, ``from_row`` reads it
back). Both render fal's shapes, which are not uniform, so the rules live here only:

- 422 (bad input): ``{"detail": [{"loc", "msg", "type"}, …]}``, no ``error_type`` in the body;
- anything else: ``{"detail": "…", "error_type": "…"}`` (503 outages, 504 start deadlines,
  400 cancellations, 500 generation faults).

No stillreel imports here: every layer (engines, endpoints, jobs, api, the CLI) may use it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# fal's error_type of a request ended by a cancel (also the client's RequestCancelled marker).
CANCELLED_ERROR_TYPE = "request_cancelled"


class StillreelError(Exception):
    """A request that cannot be served: fal's status, error type, location and message.

    ``status`` is what the client sees: 422 for bad input, 5xx for failures that are not the
    caller's fault. ``loc`` locates the fault (empty: no one field); ``ctx`` is fal's optional
    structured context of a 422 item."""

    def __init__(
        self, message: str, error_type: str = "value_error", loc: tuple = (), status: int = 422,
        ctx: dict | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.error_type = error_type
        self.loc = tuple(loc)
        self.status = status
        self.ctx = dict(ctx or {})

    @property
    def detail(self) -> list[dict] | str:
        """fal's ``detail``: one located item below 500 (``loc`` as given), the message from 500 on."""
        if self.status >= 500:
            return self.message
        item = {"loc": list(self.loc), "msg": self.message, "type": self.error_type}
        if self.ctx:
            item["ctx"] = self.ctx
        return [item]

    def failure(self, detail: list[dict] | str | None = None) -> Failure:
        """This error as a stored failure; ``detail`` overrides ours (an endpoint's fal loc)."""
        return Failure(self.status, self.detail if detail is None else detail, self.error_type)


class EngineError(StillreelError):
    """An error raised while planning or rendering a request. ``loc`` names the normalized
    request's attribute, without a ``"body"`` prefix (``("end_image",)``, ``("dynamic_masks", 2,
    "trajectory")``); ``Endpoint.detail`` turns it into fal's ``["body", <fal field>, …]``."""


class InputError(EngineError):
    """An invalid input: fal's 422 with a ``detail`` list already in fal's terms (``loc`` from
    "body", or "query" for a query parameter)."""

    def __init__(self, detail: list[dict]):
        first = detail[0] if detail else {"msg": "invalid input", "type": "value_error", "loc": ["body"]}
        super().__init__(first["msg"], first["type"], tuple(first["loc"]), 422)
        self._detail = detail

    @property
    def detail(self) -> list[dict]:
        return self._detail

    @classmethod
    def one(cls, loc: tuple, msg: str, type: str = "value_error", **ctx) -> InputError:
        """One item under ``["body", *loc]``."""
        return cls.at(["body", *loc], msg, type, **ctx)

    @classmethod
    def at(cls, loc: list, msg: str, type: str = "value_error", **ctx) -> InputError:
        """One item at ``loc`` exactly (``["query", "fal_webhook"]``)."""
        item = {"loc": list(loc), "msg": msg, "type": type}
        if ctx:
            item["ctx"] = ctx
        return cls([item])


class OptionsError(StillreelError, ValueError):
    """An engine option is missing, unknown or has a bad value. A configuration error, found when
    the server starts or an engine loads: not the request's fault, hence 500."""

    def __init__(self, message: str):
        super().__init__(message, "engine_options_invalid", (), 500)


@dataclass(frozen=True)
class Failure:
    """How a request ended badly: the status and body its result endpoint (and webhook) carry.

    The only shape a failure is stored in: ``to_row`` gives the job row's columns, ``from_row``
    reads them back; nothing else reads ``error`` / ``error_status`` directly."""

    status: int
    detail: list[dict] | str  # fal's: a located list for bad input, else a string
    error_type: str | None  # None only for a row written without one (older versions)

    # -- the named endings: one place each for their wording ----------------------------------

    @classmethod
    def cancelled(cls) -> Failure:
        return cls(400, "The request was cancelled", CANCELLED_ERROR_TYPE)

    @classmethod
    def start_deadline_passed(cls) -> Failure:
        """X-Fal-Request-Timeout ran out before a worker started it (504, never retried)."""
        return cls(504, "The request did not start before its X-Fal-Request-Timeout deadline", "request_timeout")

    @classmethod
    def worker_lost(cls, attempts: int) -> Failure:
        return cls(503, f"The worker running this request stopped {attempts} times", "runner_disconnected")

    # -- stored ---------------------------------------------------------------------------------

    def to_row(self) -> dict:
        """The job row's columns for this failure."""
        return {"error": {"detail": self.detail}, "error_type": self.error_type, "error_status": self.status}

    @classmethod
    def from_row(cls, job) -> Failure | None:
        """The failure a job row (``stillreel.jobs.schema.Job``) holds; None when it holds none."""
        if not job.error and not job.error_type:
            return None
        return cls(job.error_status or 500, (job.error or {}).get("detail", "failed"), job.error_type)

    # -- on the wire ----------------------------------------------------------------------------

    def body(self) -> dict:
        """The result endpoint's body. fal's 422 list carries no ``error_type``; the rest do."""
        body = {"detail": self.detail}
        if self.error_type and not isinstance(self.detail, list):
            body["error_type"] = self.error_type
        return body

    def headers(self) -> dict[str, str]:
        """The result endpoint's error headers (besides ``x-fal-request-id``)."""
        if not self.error_type:
            return {}
        headers = {"x-fal-error-type": self.error_type}
        if self.error_type == "request_timeout":  # fal's marker: the caller's own deadline, never retried
            headers["X-Fal-Request-Timeout-Type"] = "user"
        return headers

    def webhook_payload(self) -> dict:
        """The webhook's ``payload``: fal sends the bare ``{"detail": …}``."""
        return {"detail": self.detail}

    def describe(self) -> str:
        """One line for people, with each item's location (the CLI): ``body.image_url: …``."""
        return describe_detail(self.detail)

    @property
    def message(self) -> str:
        """One line for people, messages only: the status's ``error`` field, worker logs."""
        if isinstance(self.detail, list) and self.detail:
            return "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in self.detail)
        return str(self.detail)


def describe_detail(detail: Any) -> str:
    """fal's detail as one human line: ``body.image_url: field required; ...`` (also any detail a
    server answered with: the client reads it from responses)."""
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc") or ())
                msg = item.get("msg", "")
                parts.append(f"{loc}: {msg}" if loc else str(msg))
            else:
                parts.append(str(item))
        return "; ".join(parts) or "error"
    if isinstance(detail, dict):
        return json.dumps(detail)
    return str(detail) if detail is not None else "error"
