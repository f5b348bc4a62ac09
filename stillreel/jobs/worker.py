"""A worker: claims a request, drives its render child through it, stores the video, finishes.

The worker itself never generates (its child process does), so it can always heartbeat, notice a
cancel, and kill a generation that does not stop in time. Every write about a job is fenced by
(worker id, attempt) in the store.

A worker never exits on an error, only on ``stop()``: a database or storage outage is waited out with
backoff and jitter (``jobs.outage``). A job in hand keeps generating while its heartbeat cannot reach
the database, and its finish is retried until the database answers; if the lease ran out meanwhile
and another process re-queued the job, the fence refuses the finish and this attempt's upload is
deleted, so nothing is lost and nothing is stored twice.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import tempfile
import threading
import time
from pathlib import Path

from stillreel.api.faults import injected_failure
from stillreel.config import Settings
from stillreel.endpoints.registry import find
from stillreel.jobs.leftovers import SWEEP_EVERY_S, sweep_partial_outputs
from stillreel.jobs.outage import Backoff, OutageLog, is_db_outage, is_disk_full, is_transient
from stillreel.jobs.child import ChildProcess
from stillreel.jobs.messages import Done, Failed, JobCancelled, Outcome, Progressed, RenderJob, Requeue
from stillreel.jobs.schema import CANCELING, Failure, Job
from stillreel.jobs import uploads
from stillreel.jobs.store import JobStore
from stillreel.storage.naming import new_key

log = logging.getLogger("stillreel.worker")
# How often a running job's progress and logs reach the database (and its lease is renewed).
BEAT_S = 0.25
# A worker whose loop has not come round for this long is reported dead by /healthz.
STALE_S = 60.0


class Unavailable(Exception):
    """The job could not be done for a reason that is not the request's (the disk is full, the
    storage is away): it was re-queued, and the worker backs off before claiming again."""

    transient = True


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
        self.child = ChildProcess(settings)
        self._stop = threading.Event()
        self._last_maintain = 0.0
        self._last_sweep: float | None = None
        self.tmp = Path(settings.data_dir) / "tmp"
        self.thread: threading.Thread | None = None
        self.phase = "starting"  # starting | idle | busy | waiting (an outage) | stopped
        self.beat = time.monotonic()
        self.outage = OutageLog(log, f"worker {self.id}")
        self.backoff = Backoff()
        # A full disk ends only when a video is stored again, and each try renders a whole video
        # first: its own log and slower backoff, reset by a stored video, not by a claim.
        self.storage_outage = OutageLog(log, f"worker {self.id}")
        self.storage_backoff = Backoff(first=1.0, cap=60.0)

    # -- main loop ---------------------------------------------------------------------------

    def run(self) -> None:
        """Work until ``stop()``. Every error is logged once per outage and retried with backoff;
        returning early would silently stop this worker's share of the queue for good."""
        self.thread = threading.current_thread()
        try:
            while not self._stop.is_set():
                try:
                    self._loop()
                except Unavailable as exc:
                    self.phase = "waiting"
                    self.storage_outage.failed(exc)
                    self._stop.wait(self.storage_backoff.next())
                except Exception as exc:
                    self.phase = "waiting"
                    self.outage.failed(exc)
                    self._stop.wait(self.backoff.next())
        finally:
            self.phase = "stopped"
            self.child.stop()

    def _loop(self) -> None:
        if not self.child.alive():
            self.phase = "starting"  # loading weights can take minutes: alive, not stuck
            self.tmp.mkdir(parents=True, exist_ok=True)
            self.child.restart()
            log.info("worker %s ready", self.id)
        self._tick("idle")
        self._sweep()
        self._maintain()
        job = self.store.claim(self.id, self.settings.lease_s, self.endpoints)
        self._recovered()
        if job is None:
            self.wake.wait(0.5)
            self.wake.clear()
            return
        self.on_change(job.id)
        self._tick("busy")
        try:
            self.process(job)
        except Exception as exc:
            self._unexpected(job, exc)
        finally:
            self.on_change(job.id)

    def _unexpected(self, job: Job, exc: Exception) -> None:
        """An error escaped ``process``. An outage is not the request's fault: the job goes back to
        the queue (or, with the database away, its lease runs out and whoever is alive re-queues
        it) and the worker backs off. Anything else is a bug: the request fails, visibly."""
        if isinstance(exc, Unavailable):
            raise exc
        if is_transient(exc):
            self._requeue(job, "the worker could not reach its database or storage")
            if is_disk_full(exc):
                raise Unavailable("no space left on the worker's disk") from exc
            raise exc
        log.exception("worker %s: unexpected error on %s", self.id, job.id)
        try:
            self.store.finish(job, failure=Failure(500, "internal error in the worker", "internal_server_error"))
        except Exception:  # the lease runs out and the job is re-queued
            log.warning("worker %s: could not record the failure of %s", self.id, job.id)

    def _requeue(self, job: Job, reason: str) -> None:
        try:
            self.store.release(job, reason=reason)
        except Exception:  # the database is away too: the lease runs out instead
            log.warning("worker %s: could not re-queue %s; its lease will expire", self.id, job.id)

    def _tick(self, phase: str) -> None:
        self.phase = phase
        self.beat = time.monotonic()

    def _recovered(self) -> None:
        self.outage.ok()
        self.backoff.reset()

    def live(self) -> bool:
        """Its thread runs and its loop came round recently (or it is loading its engines)."""
        if self.thread is None or not self.thread.is_alive():
            return False
        if self.phase == "starting":  # unless it is starting again after a failed start
            return not self.outage.active
        return self.phase in ("idle", "busy") and time.monotonic() - self.beat < STALE_S

    def stop(self) -> None:
        self._stop.set()
        self.wake.set()

    def _maintain(self) -> None:
        now = time.monotonic()
        if now - self._last_maintain >= 1.0:
            self._last_maintain = now
            if self.store.maintain(self.settings.max_attempts):
                self.on_change(None)

    def _sweep(self) -> None:
        """Partial MP4s of workers killed mid-job (SIGKILL, power loss): at start, then hourly."""
        now = time.monotonic()
        if self._last_sweep is None or now - self._last_sweep >= SWEEP_EVERY_S:
            sweep_partial_outputs(self.tmp, self.store)
            self._last_sweep = now  # after it succeeded: a sweep cut short by an outage runs again

    def _retry(self, call):
        """``call()`` until the database answers it; raises only if the worker is stopping (then
        the job's lease runs out and another worker takes it)."""
        while True:
            try:
                result = call()
            except Exception as exc:
                if not is_db_outage(exc) or self._stop.is_set():
                    raise
                self.outage.failed(exc)
                self.phase = "waiting"
                self._stop.wait(self.backoff.next())
                continue
            self._recovered()
            self._tick("busy")
            return result

    # -- one job -----------------------------------------------------------------------------

    def process(self, job: Job) -> None:
        if (failure := injected_failure(job.plan)) is not None:  # --faults generation=RATE
            self.store.finish(job, failure=failure, logs=[(time.time(), "ERROR", failure.message)])
            return
        endpoint = find(job.endpoint_id)
        title = endpoint.title if endpoint else job.endpoint_id
        logs: list[tuple[float, str, str]] = [(time.time(), "INFO", f"started on worker {self.id} (attempt {job.attempts}): {title}")]
        if not self.child.alive():
            self.child.restart()
        # Named after the attempt, so that the sweep can tell a live attempt's file from a leftover.
        fd, out = tempfile.mkstemp(suffix=".mp4", dir=self.tmp, prefix=f"gen-{job.id}-{job.attempts}-")
        os.close(fd)
        out_path = Path(out)
        self.child.cancel.clear()
        self.child.conn.send(RenderJob(job.plan, job.engine, str(out_path)))
        progress = 0.0
        next_beat = 0.0
        # The heartbeat retries sooner than the claim loop: the holder should win the race against
        # the lease's expiry when the database comes back.
        beat_backoff = Backoff(BEAT_S, max(BEAT_S, min(5.0, self.settings.lease_s / 4)))
        cancel_deadline = None
        outcome: Outcome | None = None
        try:
            while outcome is None:
                self.beat = time.monotonic()
                ready = self.child.conn.poll(0.05)
                while ready and outcome is None:
                    try:
                        message = self.child.conn.recv()
                    except EOFError:
                        break
                    match message:
                        case Progressed(fraction, line, level):
                            if fraction is not None:
                                progress = max(0.0, min(1.0, fraction))
                            if line:
                                logs.append((time.time(), level, line))
                            ready = self.child.conn.poll(0)
                        case Done() | Failed() | JobCancelled() | Requeue():
                            outcome = message
                        case _:
                            raise RuntimeError(f"unexpected message from the render child: {message!r}")
                if outcome is not None:
                    break
                if self._stop.is_set():  # shutting down: hand the job to the next worker now
                    self.child.kill()
                    try:
                        if not self.store.release(job):
                            self.store.finish(job, cancelled=True)  # it was being cancelled anyway
                    except Exception:  # the database is away: the lease runs out and it is re-queued
                        log.warning("worker %s: could not hand %s back; its lease will expire", self.id, job.id)
                    return
                if not self.child.alive():
                    code = self.child.process.exitcode if self.child.process else None
                    outcome = Failed(500, f"the engine process died (exit code {code})", "runner_disconnected")
                    self.child.restart()
                    break
                now = time.monotonic()
                if now >= next_beat:
                    try:
                        status = self.store.heartbeat(job, self.settings.lease_s, progress, logs)
                    except Exception as exc:
                        if not is_db_outage(exc):
                            raise
                        # The database is away: keep generating and keep the log lines for the
                        # next beat. Either it comes back within the lease, or the lease runs
                        # out, the job is re-queued, and the fenced beat below says so.
                        self.outage.failed(exc)
                        next_beat = now + beat_backoff.next()
                        status = "unknown"
                    else:
                        self._recovered()
                        beat_backoff.reset()
                        next_beat = now + BEAT_S
                        logs = []
                        self.on_change(job.id)
                    if status is None:  # the lease went to someone else, or the job ended
                        log.warning("worker %s lost %s; stopping its generation", self.id, job.id)
                        self.child.restart()
                        return
                    if status == CANCELING and cancel_deadline is None:
                        self.child.cancel.set()
                        cancel_deadline = now + self.settings.cancel_grace_s
                        logs.append((time.time(), "INFO", "cancel requested; stopping"))
                if cancel_deadline is not None and now > cancel_deadline:
                    logs.append((time.time(), "WARN", "the engine did not stop in time; killed it"))
                    self.child.restart()
                    outcome = JobCancelled()
            self._finish(job, outcome, out_path, logs)
        finally:
            out_path.unlink(missing_ok=True)

    def _finish(self, job: Job, outcome: Outcome, out_path: Path, logs: list) -> None:
        match outcome:
            case Done(info):
                self._store_video(job, info, out_path, logs)
            case Requeue(reason):  # the child ran out of disk: re-queued, not FAILED
                self._requeue(job, f"{reason}; request re-queued")
                raise Unavailable(reason)
            case JobCancelled():
                self._retry(lambda: self.store.finish(job, cancelled=True, logs=logs + [(time.time(), "INFO", "cancelled")]))
            case Failed(status, detail, error_type):
                failure = Failure(status, detail, error_type)
                self._retry(lambda: self.store.finish(job, failure=failure, logs=logs + [(time.time(), "ERROR", failure.message)]))
            case _:
                raise TypeError(f"not an outcome: {outcome!r}")

    def _store_video(self, job: Job, info: dict, out_path: Path, logs: list) -> None:
        """Upload the MP4 and record the result: fenced, and re-queued when the storage is away."""
        # Fenced before storing: an attempt that lost its lease uploads nothing.
        if self._retry(lambda: self.store.heartbeat(job, self.settings.lease_s)) is None:
            log.warning("worker %s lost %s before storing its video; discarded", self.id, job.id)
            return
        # Noted before the upload, so that a file this attempt cannot record (it is cut off or dies
        # between upload and finish) is found and deleted by jobs/uploads.sweep.
        key = new_key("output.mp4", "video/mp4")
        self._retry(lambda: uploads.note(self.store, job.id, job.attempts, key))
        try:
            stored = self.storage.put_file(out_path, file_name="output.mp4", content_type="video/mp4", key=key,
                                           move=True)
        except Exception as exc:  # a full disk, the storage away: not the request's fault
            with contextlib.suppress(Exception):  # the upload may have landed though it failed here
                self.storage.delete(key)
                uploads.settle(self.store, key)
            self._requeue(job, "the video could not be stored (no space left, or the storage is "
                          "unavailable); request re-queued")
            raise Unavailable("the video could not be stored") from exc
        self.storage_outage.ok()
        self.storage_backoff.reset()
        video = {
            "url": self.storage.url(stored.key, job.base_url),
            "content_type": "video/mp4",
            "file_name": stored.file_name,
            "file_size": stored.size,
        }
        info = info or {}
        logs.append((time.time(), "INFO", f"done: {info.get('frames', '?')} frames, "
                     f"{info.get('width', '?')}x{info.get('height', '?')} by the {info.get('engine', '?')} engine"))
        result = {"video": video}
        if info.get("dropped_defaults"):  # fal clients ignore keys they do not know
            result["stillreel"] = {"dropped_defaults": list(info["dropped_defaults"])}
        if not self._retry(lambda: self.store.finish(job, result=result, logs=logs)):
            self._discard(job, stored.key, video["url"])
        with contextlib.suppress(Exception):  # a lost settle is harmless: the sweep sees the file is recorded
            uploads.settle(self.store, stored.key)

    def _discard(self, job: Job, key: str, url: str) -> None:
        """The fenced finish was refused: another attempt owns the job now (or it ended), so this
        attempt's upload is an orphan. Unless the refusal is our own finish, committed before the
        connection dropped and retried: then the row already names this very file."""
        current = self._retry(lambda: self.store.get(job.id))
        if current is not None and ((current.result or {}).get("video") or {}).get("url") == url:
            return
        log.warning("worker %s no longer owns %s; deleting its upload", self.id, job.id)
        self.storage.delete(key)
