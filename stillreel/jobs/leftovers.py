"""Partial MP4s that killed workers leave in ``data_dir/tmp``.

A worker renders into ``tmp/gen-<request id>-<attempt>-<random>.mp4`` and removes the file when the
attempt ends, but a worker killed mid-job (SIGKILL, OOM, power loss) never does; on a busy GPU box
those partial videos fill the disk. Workers sweep at start and hourly: a file goes once it is older
than the grace *and* its attempt no longer runs (the request finished, or was re-queued and taken
up again as a later attempt). Files named the old way (``tmp*.mp4``) only need to be old.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

from stillreel.jobs.schema import ACTIVE

log = logging.getLogger("stillreel.worker")
SWEEP_EVERY_S = 3600.0
# Even a live attempt's file is kept until it is this old; its owner is checked after that.
GRACE_S = 600.0
_OURS = re.compile(r"^gen-(?P<id>[0-9a-f-]{36})-(?P<attempt>\d+)-[^/]*\.mp4$")
_LEGACY = re.compile(r"^tmp[^/]*\.mp4$")


def sweep_partial_outputs(tmp: Path, store, grace_s: float = GRACE_S) -> int:
    """Remove leftover partial outputs in ``tmp``; returns how many went."""
    if not tmp.is_dir():
        return 0
    cutoff = time.time() - grace_s
    removed = 0
    for path in tmp.iterdir():
        ours, legacy = _OURS.match(path.name), _LEGACY.match(path.name)
        if not (ours or legacy):
            continue  # not a render (S3 staging files share this folder)
        try:
            if path.stat().st_mtime > cutoff:
                continue
        except FileNotFoundError:
            continue
        if ours:
            job = store.get(ours["id"])
            if job is not None and job.status in ACTIVE and job.attempts == int(ours["attempt"]):
                continue  # still being rendered by a live attempt (long diffusion runs)
        path.unlink(missing_ok=True)
        removed += 1
    if removed:
        log.info("removed %d partial video(s) left in %s by stopped workers", removed, tmp)
    return removed
