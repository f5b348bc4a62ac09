"""What the command line shows and how it exits: the stderr console, exit codes, progress bars.

Shared by ``stillreel run`` on a server (``cli_client``) and in this process (``cli_local``).
"""

from __future__ import annotations

import contextlib
from enum import IntEnum

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn, TimeRemainingColumn

from stillreel.client import errors as E
from stillreel.client.types import Status

err = Console(stderr=True, highlight=False, soft_wrap=True)  # no hard wraps: scripts grep this


class Exit(IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    INVALID_INPUT = 3
    NOT_FOUND = 4
    AUTH = 5
    UNREACHABLE = 6
    CANCELLED = 7
    NOT_READY = 8
    ALREADY_COMPLETED = 9
    INTERRUPTED = 130


def fail(code: Exit, message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}", markup=True)
    return typer.Exit(int(code))


def exit_code_for(exc: E.StillreelError) -> Exit:
    for kind, code in ((E.RequestCancelled, Exit.CANCELLED), (E.ValidationError, Exit.INVALID_INPUT),
                       (E.NotFound, Exit.NOT_FOUND), (E.AuthenticationError, Exit.AUTH),
                       (E.ConnectionFailed, Exit.UNREACHABLE)):
        if isinstance(exc, kind):
            return code
    return Exit.FAILED


@contextlib.contextmanager
def client_errors():
    """Turn client errors into a one-line message on stderr and the documented exit code."""
    try:
        yield
    except E.StillreelError as exc:
        error_type = getattr(exc, "error_type", None)
        suffix = f" [{error_type}]" if error_type else ""
        raise fail(exit_code_for(exc), f"{exc}{suffix}") from None


# --- progress --------------------------------------------------------------------------------------


class ProgressView:
    """Queue position while queued, then percent, ETA and the latest log line (on stderr)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                            TimeRemainingColumn(), TextColumn("[dim]{task.fields[log]}"), console=err,
                            disable=not enabled)
        self.task = self.bar.add_task("submitting", total=100, log="")
        self.running = False

    def __enter__(self) -> ProgressView:
        self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.stop()

    def _log(self, message: str | None) -> str | None:
        if not message:
            return None
        line = message.strip().splitlines()[-1] if message.strip() else ""
        return line if len(line) <= 60 else line[:59] + "…"

    def queued(self, position: int | None) -> None:
        where = f"position {position}" if position is not None else "waiting"
        self.bar.update(self.task, description=f"queued ({where})")

    def running_at(self, percent: float | None, log: str | None = None) -> None:
        if not self.running:
            self.running = True
            self.bar.reset(self.task, total=100, description="generating")  # ETA from now, not from submit
        fields = {"log": shown} if (shown := self._log(log)) else {}
        self.bar.update(self.task, completed=percent if percent is not None else None, **fields)

    def status(self, status: Status) -> None:
        if status.queued:
            self.queued(status.queue_position)
        elif status.in_progress:
            self.running_at(status.progress, status.logs[-1].message if status.logs else None)
        elif status.succeeded:
            self.bar.update(self.task, completed=100, description="done")


class LocalProgress:
    """The engine's ``Progress`` for an in-process run: feeds the bar, never cancelled."""

    cancelled = False

    def __init__(self, view: ProgressView):
        self.view = view

    def report(self, fraction: float, message: str | None = None) -> None:
        self.view.running_at(max(0.0, min(1.0, fraction)) * 100, message)

    def log(self, message: str, level: str = "INFO") -> None:
        self.view.running_at(None, message)


