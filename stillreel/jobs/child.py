"""The render child process: loads engines once, renders one job at a time; and ``ChildProcess``,
the worker's handle on it.

It is a separate process so that the worker can kill a generation that ignores a cancel, hangs, or
crashes (a segfault, CUDA gone bad) without dying itself, then start a fresh child. What goes over
the pipe is in ``jobs.messages``.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import time
import traceback
from pathlib import Path

from stillreel.config import Settings
from stillreel.endpoints.registry import Plan, find
from stillreel.engines import EngineSpec, create
from stillreel.engines.base import Cancelled, Engine, EngineError, Progress
from stillreel.jobs.messages import Done, Failed, JobCancelled, Progressed, Ready, RenderJob, Requeue, Stop
from stillreel.jobs.outage import is_disk_full

log = logging.getLogger("stillreel.child")
CHILD_NICENESS = 5
_spawn = mp.get_context("spawn")


def render(plan: Plan, engine: Engine, fetcher, out_path: Path, progress: Progress) -> dict:
    """Fetch and decode the plan's inputs, generate, and encode the MP4 at ``out_path``.

    The one render: the worker's child and ``stillreel run`` both call it."""
    from stillreel.media.encode import encode
    from stillreel.media.resolve import resolve

    progress.report(0.0, "fetching inputs")
    # Under the caller's own field names (generate_audio, not the normalized audio).
    dropped = [find(plan.endpoint_id).fal_loc((attr,))[-1] for attr in plan.dropped]
    for name in dropped:
        progress.log(f"{name}: the endpoint's default asks for it but the {engine.name} engine cannot "
                     "honour it; generating without it", "WARN")
    request = resolve(plan, fetcher)
    progress.report(0.0, f"generating {request.seconds} s with the {engine.name} engine")
    clip = engine.generate(request, progress)
    facts = encode(clip, out_path)
    return {**(clip.info or {}), "width": clip.width, "height": clip.height, "fps": clip.fps,
            "frames": clip.frame_count, **({"dropped_defaults": dropped} if dropped else {}),
            **({"encode": facts} if isinstance(facts, dict) else {})}


def failure_detail(exc: EngineError, plan: Plan) -> list[dict] | str:
    """fal's ``detail`` for an engine error, under the plan's endpoint's own field names.

    Every queued plan was made by ``Endpoint.plan``, which names a registered endpoint."""
    return find(plan.endpoint_id).detail(exc)


class _PipeProgress:
    """Progress that forwards to the parent, throttled, and notices cancellation."""

    def __init__(self, conn, cancel_event):
        self.conn = conn
        self.cancel_event = cancel_event
        self._last = 0.0
        self._parent = os.getppid()

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def report(self, fraction: float, message: str | None = None) -> None:
        if self.cancel_event.is_set():
            raise Cancelled()
        if os.getppid() != self._parent:  # the worker died (SIGKILL): its job belongs to another now
            os._exit(1)
        now = time.monotonic()
        if message is not None or now - self._last >= 0.1 or fraction >= 1.0:
            self._last = now
            self.conn.send(Progressed(float(fraction), message))

    def log(self, message: str, level: str = "INFO") -> None:
        self.conn.send(Progressed(None, message, level))


def child_main(conn, cancel_event, settings: Settings) -> None:
    from stillreel.media.fetch import Fetcher
    from stillreel.storage import open_storage

    # Ctrl-C and SIGTERM reach the whole process group; the worker decides when this process ends
    # (it re-queues the job first), so the child must not die with them.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Generation is batch work: it still gets every idle cycle, but status polls, submits and
    # uploads in the API process answer first when the CPU is saturated.
    os.nice(CHILD_NICENESS)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s child %(levelname)s %(message)s")
    storage = open_storage(settings)
    fetcher = Fetcher(storage, settings.limits)
    engines: dict[str, Engine] = {}
    load_errors: dict[str, str] = {}

    def engine_for(spec: EngineSpec) -> Engine:
        key = repr(spec.to_json())
        if key not in engines:
            engines[key] = create(spec)
        return engines[key]

    for spec in settings.engine_specs():  # load weights at start, not on the first request
        try:
            engine_for(spec)
        except Exception as exc:  # reported on each job that needs it
            load_errors[repr(spec.to_json())] = f"{type(exc).__name__}: {exc}"
            log.exception("could not load engine %s", spec.name)
    conn.send(Ready())

    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if isinstance(job, Stop):
            return
        if not isinstance(job, RenderJob):
            raise TypeError(f"not a message for the render child: {job!r}")
        progress = _PipeProgress(conn, cancel_event)
        plan = Plan.from_json(job.plan)
        try:
            spec = EngineSpec.from_json(job.engine)
            key = repr(spec.to_json())
            if key in load_errors and key not in engines:
                raise EngineError(f"the {spec.name} engine could not be loaded: {load_errors[key]}",
                                  "engine_unavailable", status=503)
            info = render(plan, engine_for(spec), fetcher, Path(job.out_path), progress)
            conn.send(Done(info))
        except Cancelled:
            conn.send(JobCancelled())
        except EngineError as exc:
            conn.send(Failed(exc.status, failure_detail(exc, plan), exc.error_type))
        except Exception as exc:
            if is_disk_full(exc):  # transient, and the message would name a server path
                log.warning("no space left for the video: %s", exc)
                conn.send(Requeue("no space left on the worker's disk"))
                continue
            log.error("generation failed:\n%s", traceback.format_exc())
            # An OSError's text names the file (a server path, which callers must not see): its
            # strerror says what went wrong without it. The full text is in the log above.
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            conn.send(Failed(500, f"generation failed: {type(exc).__name__}: {reason}", "internal_server_error"))


class ChildProcess:
    """The render child process (``jobs.child``) and its pipe; restarted whenever it has to be killed."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.process = None
        self.conn = None
        self.cancel = _spawn.Event()

    def start(self, timeout_s: float = 600.0) -> None:
        parent, child = _spawn.Pipe()
        self.cancel.clear()  # one Event for the worker's lifetime, handed to each new child
        self.process = _spawn.Process(
            target=child_main, args=(child, self.cancel, self.settings), name="stillreel-child", daemon=True
        )
        self.process.start()
        child.close()
        self.conn = parent
        try:
            if not parent.poll(timeout_s):
                raise RuntimeError("the render child process did not start")
            message = parent.recv()
            if not isinstance(message, Ready):
                raise RuntimeError(f"unexpected message from the render child: {message!r}")
        except BaseException:
            # Killed, so that the next try starts afresh instead of taking a half-started child
            # for a live one (its late Ready would read as a job's outcome).
            self.kill()
            raise

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
                self.conn.send(Stop())
                self.process.join(5)
            except (OSError, BrokenPipeError):
                pass
        self.kill()
