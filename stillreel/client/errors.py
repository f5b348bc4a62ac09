"""Errors the client raises, each carrying what the server said (fal's ``detail`` and ``error_type``).

```
StillreelError
├── ConnectionFailed            the server could not be reached (after the safe retries)
├── WaitTimeout                 a wait ran past its timeout (the request may still be running)
└── APIError                    the server answered with an error status
    ├── BadRequest              400
    ├── AuthenticationError     401, 403
    ├── NotFound                404 (unknown endpoint or request id)
    ├── ValidationError         422: ``field_errors`` is fal's ``detail`` list
    ├── RequestCancelled        the request ended because it was cancelled
    ├── QueueFull               503 with Retry-After: the request was not queued
    └── ServerError             other 5xx (a generation that failed on the server)
```
"""

from __future__ import annotations

from typing import Any

import httpx

from stillreel.client.states import CANCELLED_ERROR_TYPE
# One wording of fal's detail for people, shared with the server side and the CLI.
from stillreel.errors import describe_detail  # noqa: F401 (re-exported)


class StillreelError(Exception):
    """Base class of every error this client raises."""


class ConnectionFailed(StillreelError):
    pass


class WaitTimeout(StillreelError, TimeoutError):
    def __init__(self, message: str, request_id: str | None = None):
        super().__init__(message)
        self.request_id = request_id


class APIError(StillreelError):
    """The server answered ``status_code``; ``detail`` is fal's ``detail`` (a string or a list)."""

    def __init__(
        self,
        status_code: int,
        detail: Any,
        *,
        error_type: str | None = None,
        body: Any = None,
        request_id: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        self.status_code = status_code
        self.detail = detail
        self.error_type = error_type
        self.body = body
        self.request_id = request_id
        self.headers = headers or {}
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return f"{self.status_code}: {describe_detail(self.detail)}"


class BadRequest(APIError):
    pass


class AuthenticationError(APIError):
    pass


class NotFound(APIError):
    pass


class ValidationError(APIError):
    @property
    def field_errors(self) -> list[dict]:
        if isinstance(self.detail, list):
            return [e for e in self.detail if isinstance(e, dict)]
        return [{"loc": ["body"], "msg": str(self.detail), "type": self.error_type or "value_error"}]


class RequestCancelled(APIError):
    pass


class QueueFull(APIError):
    @property
    def retry_after(self) -> float | None:
        value = self.headers.get("retry-after")
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None


class ServerError(APIError):
    pass


def error_from_response(response: httpx.Response) -> APIError:
    """Build the right ``APIError`` subclass from an error response (which must already be read)."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    detail: Any = body
    error_type = response.headers.get("x-fal-error-type")
    if isinstance(body, dict):
        # fal's request errors: {"detail", "error_type"}; cancel answers: {"status": "..."}.
        detail = body.get("detail", body.get("error", body.get("status", body)))
        error_type = body.get("error_type") or error_type
    status = response.status_code
    if error_type == CANCELLED_ERROR_TYPE:
        cls: type[APIError] = RequestCancelled
    elif status == 400:
        cls = BadRequest
    elif status in (401, 403):
        cls = AuthenticationError
    elif status == 404:
        cls = NotFound
    elif status == 422:
        cls = ValidationError
    elif status == 503 and "retry-after" in response.headers:
        cls = QueueFull
    elif status >= 500:
        cls = ServerError
    else:
        cls = APIError
    return cls(
        status,
        detail,
        error_type=error_type,
        body=body,
        request_id=response.headers.get("x-fal-request-id"),
        headers={k.lower(): v for k, v in response.headers.items()},
    )
