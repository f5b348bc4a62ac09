"""A worker: claims a request, drives the runner child through it, stores the video, finishes.

The worker itself never generates (the runner child does), so it can always heartbeat, notice a
cancel, and kill a generation that does not stop in time. Every write about a job is fenced by
(worker id, attempt) in the store.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import socket
import tempfile
import threading
import time
from pathlib import Path

from stillreel.api.faults import injected_failure
from stillreel.config import Settings
from stillreel.endpoints.registry import find
from stillreel.jobs.runner import child_main
from stillreel.jobs.schema import CANCELING, Failure, Job
from stillreel.jobs.store import JobStore

log = logging.getLogger("stillreel.worker")
_spawn = mp.get_context("spawn")
# How often a running job's progress and logs reach the database (and its lease is renewed).
BEAT_S = 0.25


class Runner:
    """The child process and its pipe; restarted whenever it has to be killed."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.process = None
        self.conn = None
        self.cancel = _spawn.Event()

    def start(self, timeout_s: float = 600.0) -> None:
        parent, child = _spawn.Pipe()
        self.cancel.clear()  # one Event for the worker's lifetime, handed to each new runner
        self.process = _spawn.Process(
            target=child_main, args=(child, self.cancel, self.settings), name="stillreel-runner", daemon=True
        )
        self.process.start()
        child.close()
        self.conn = parent
        if not parent.poll(timeout_s):
            raise RuntimeError("the runner process did not start")
        msg = parent.recv()
        if msg[0] != "ready":
            raise RuntimeError(f"unexpected message from the runner: {msg!r}")

    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.join(5)
        if self.conn is not None:
            self.conn.close()
        self.process = self.conn = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.alive():
            try:
                self.conn.send(("stop",))
                self.process.join(5)
            except (OSError, BrokenPipeError):
                pass
        self.kill()


class Worker:
    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        storage,
        *,
        name: str | None = None,
        wake: threading.Event | None = None,
        on_change=None,
        endpoints: list[str] | None = None,
    ):
        self.settings = settings
        self.store = store
        self.storage = storage
        self.id = name or f"{socket.gethostname()}-{os.getpid()}-{id(self) % 10000}"
        self.wake = wake or threading.Event()
        self.on_change = on_change or (lambda job_id: None)
        self.endpoints = endpoints
        self.runner = Runner(settings)
        self._stop = threading.Event()
        self._last_maintain = 0.0
        self.tmp = Path(settings.data_dir) / "tmp"

    # -- main loop ---------------------------------------------------------------------------

    def run(self) -> None:
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.runner.start()
        log.info("worker %s ready", self.id)
        try:
            while not self._stop.is_set():
                self._maintain()
                job = self.store.claim(self.id, self.settings.lease_s, self.endpoints)
                if job is None:
                    self.wake.wait(0.5)
                    self.wake.clear()
                    continue
                self.on_change(job.id)
                try:
                    self.process(job)
                except Exception:
                    log.exception("worker %s: unexpected error on %s", self.id, job.id)
                    self.store.finish(job, failure=Failure(500, "internal error in the worker", "internal_server_error"))
                self.on_change(job.id)
        finally:
            self.runner.stop()

    def stop(self) -> None:
        self._stop.set()
        self.wake.set()

    def _maintain(self) -> None:
        now = time.monotonic()
        if now - self._last_maintain >= 1.0:
            self._last_maintain = now
            if self.store.maintain(self.settings.max_attempts):
                self.on_change(None)

    # -- one job -----------------------------------------------------------------------------

    def process(self, job: Job) -> None:
        if (failure := injected_failure(job.plan)) is not None:  # --faults generation=RATE
            self.store.finish(job, failure=failure, logs=[(time.time(), "ERROR", failure.message)])
            return
        endpoint = find(job.endpoint_id)
        title = endpoint.title if endpoint else job.endpoint_id
        logs: list[tuple[float, str, str]] = [(time.time(), "INFO", f"started on worker {self.id} (attempt {job.attempts}): {title}")]
        if not self.runner.alive():
            self.runner.restart()
        fd, out = tempfile.mkstemp(suffix=".mp4", dir=self.tmp)
        os.close(fd)
        out_path = Path(out)
        self.runner.cancel.clear()
        self.runner.conn.send(("job", job.plan, job.engine, str(out_path)))
        progress = 0.0
        last_beat = 0.0
        cancel_deadline = None
        outcome = None
        try:
            while outcome is None:
                ready = self.runner.conn.poll(0.05)
                while ready and outcome is None:
                    try:
                        msg = self.runner.conn.recv()
                    except EOFError:
                        break
                    if msg[0] == "progress":
                        _, fraction, message, level = msg
                        if fraction is not None:
                            progress = max(0.0, min(1.0, fraction))
                        if message:
                            logs.append((time.time(), level, message))
                        ready = self.runner.conn.poll(0)
                    else:
                        outcome = msg
                if outcome is not None:
                    break
                if self._stop.is_set():  # shutting down: hand the job to the next worker now
                    self.runner.kill()
                    if not self.store.release(job):
                        self.store.finish(job, canceled=True)  # it was being cancelled anyway
                    return
                if not self.runner.alive():
                    code = self.runner.process.exitcode if self.runner.process else None
                    outcome = ("failed", 500, f"the engine process died (exit code {code})", "runner_disconnected")
                    self.runner.restart()
                    break
                now = time.monotonic()
                if now - last_beat >= BEAT_S:
                    last_beat = now
                    status = self.store.heartbeat(job, self.settings.lease_s, progress, logs)
                    logs = []
                    self.on_change(job.id)
                    if status is None:  # the lease went to someone else, or the job ended
                        log.warning("worker %s lost %s; stopping its generation", self.id, job.id)
                        self.runner.restart()
                        return
                    if status == CANCELING and cancel_deadline is None:
                        self.runner.cancel.set()
                        cancel_deadline = now + self.settings.cancel_grace_s
                        logs.append((time.time(), "INFO", "cancel requested; stopping"))
                if cancel_deadline is not None and now > cancel_deadline:
                    logs.append((time.time(), "WARN", "the engine did not stop in time; killed it"))
                    self.runner.restart()
                    outcome = ("cancelled",)
            self._finish(job, outcome, out_path, logs)
        finally:
            out_path.unlink(missing_ok=True)

    def _finish(self, job: Job, outcome: tuple, out_path: Path, logs: list) -> None:
        kind = outcome[0]
        if kind == "done":
            stored = self.storage.put_file(out_path, file_name="output.mp4", content_type="video/mp4", move=True)
            video = {
                "url": self.storage.url(stored.key, job.base_url),
                "content_type": "video/mp4",
                "file_name": stored.file_name,
                "file_size": stored.size,
            }
            info = outcome[1] or {}
            logs.append((time.time(), "INFO", f"done: {info.get('frames', '?')} frames, "
                         f"{info.get('width', '?')}x{info.get('height', '?')} by the {info.get('engine', '?')} engine"))
            self.store.finish(job, result={"video": video}, logs=logs)
        elif kind == "cancelled":
            self.store.finish(job, canceled=True, logs=logs + [(time.time(), "INFO", "cancelled")])
        else:
            _, status, detail, error_type = outcome
            failure = Failure(status, detail, error_type)
            self.store.finish(job, failure=failure, logs=logs + [(time.time(), "ERROR", failure.message)])
