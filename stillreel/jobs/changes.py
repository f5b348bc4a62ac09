"""Wake-ups for status streams and sync runs when a request changes.

Workers in this process call ``notify``; waiters fall back to a short timeout, which covers
changes made by workers in other processes (PostgreSQL scale-out) at the cost of a little latency.
"""

from __future__ import annotations

import asyncio
import threading


class Changes:
    def __init__(self):
        self._lock = threading.Lock()
        self._waiters: dict[str | None, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        # Bumped on every change this process makes or hears of; the status fast path
        # (stillreel/api/fastpath.py) keeps a non-terminal answer only while it is unchanged.
        self.generation = 0

    def touch(self) -> None:
        """Record a change that no waiter needs waking for (a submit moves queue positions)."""
        with self._lock:
            self.generation += 1

    def notify(self, job_id: str | None) -> None:
        """Thread-safe. ``None`` wakes every waiter (queue positions moved)."""
        with self._lock:
            self.generation += 1
            if job_id is None:
                targets = [w for ws in self._waiters.values() for w in ws]
            else:
                targets = list(self._waiters.get(job_id, ()))
        for loop, event in targets:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # loop closed
                pass

    async def wait(self, job_id: str, timeout: float) -> None:
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.setdefault(job_id, set()).add(entry)
        try:
            await asyncio.wait_for(entry[1].wait(), timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            with self._lock:
                waiters = self._waiters.get(job_id)
                if waiters is not None:
                    waiters.discard(entry)
                    if not waiters:
                        del self._waiters[job_id]
