"""py-spy profiles of a server under load, for ``bench/api.py --profile``: record one, and
summarize the event loop thread's samples."""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
from pathlib import Path


def profile(pid: int, seconds: float, out: Path) -> subprocess.Popen:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return subprocess.Popen([spy, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "250", "-f", "raw",
                             "-o", str(out), "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarize_profile(path: Path, top: int = 16) -> tuple[list, list]:
    """The event loop thread's samples from py-spy's collapsed stacks: (self, inclusive) shares per
    function, leaving out the frames every sample shares (uvicorn's and the CLI's outer frames)."""
    inclusive: collections.Counter = collections.Counter()
    own: collections.Counter = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if "Server.serve" not in stack and "asyncio_run" not in stack:
            continue  # worker, webhook and thread-pool threads
        n = int(count)
        total += n
        frames = [re.sub(r" \((?:.*/)?([^/()]+?)(?::\d+)?\)$", r" (\1)", f) for f in stack.split(";")]
        for name in set(frames):
            inclusive[name] += n
        own[frames[-1]] += n
    if not total:
        return [], []
    return ([(k, n / total) for k, n in own.most_common(top)],
            [(k, n / total) for k, n in inclusive.most_common(60) if n / total < 0.97][:top])
