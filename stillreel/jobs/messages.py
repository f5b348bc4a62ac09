"""What the worker and its render child say to each other over their pipe: one frozen dataclass per
message, pickled by ``multiprocessing``, dispatched with ``match``.

Worker → child: ``RenderJob`` (one at a time), ``Stop``.
Child → worker: ``Ready`` once its engines are loaded; per job, any number of ``Progressed`` and then
one outcome: ``Done``, ``Failed``, ``JobCancelled`` or ``Requeue``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RenderJob:
    """Render ``plan`` (``Plan.to_json()``) with ``engine`` (``EngineSpec.to_json()``) into ``out_path``."""

    plan: dict
    engine: dict
    out_path: str


@dataclass(frozen=True)
class Stop:
    """Exit after the job in hand (there is none: the worker sends it only when idle)."""


@dataclass(frozen=True)
class Ready:
    """The child loaded its engines (or recorded why one could not be loaded) and takes jobs."""


@dataclass(frozen=True)
class Progressed:
    """A progress figure (``None``: unchanged), maybe with a log line at ``level``."""

    fraction: float | None
    message: str | None = None
    level: str = "INFO"


@dataclass(frozen=True)
class Done:
    """The MP4 is at the path the worker asked for; ``info`` are the engine's facts about it."""

    info: dict


@dataclass(frozen=True)
class Failed:
    """The request failed: fal's HTTP status, ``detail`` (a located list below 500, a string from
    500 on) and error type, already under the endpoint's own field names."""

    status: int
    detail: list[dict] | str
    error_type: str


@dataclass(frozen=True)
class JobCancelled:
    """The engine stopped at its next step because the job was cancelled."""


@dataclass(frozen=True)
class Requeue:
    """Not the request's fault (the worker's disk is full): the job goes back to the queue."""

    reason: str


Outcome = Done | Failed | JobCancelled | Requeue
