"""A full disk (ENOSPC) on a real, tiny tmpfs: uploads answer 507 and submits 503 + Retry-After in
fal's shape, without the server's paths; a generation that runs out of space is re-queued, not
FAILED, and finishes once space is freed. Needs root (mount); skipped otherwise."""

from __future__ import annotations

import base64
import contextlib
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
from apihelp import IMAGE, V2
from live_server import LiveServer

from stillreel.config import Settings
from stillreel.endpoints.registry import ENDPOINTS
from stillreel.engines import EngineSpec
from stillreel.jobs.schema import FAILED, SUCCEEDED
from stillreel.jobs.store import JobStore
from stillreel.jobs.worker import Worker
from stillreel.storage import open_storage

SPEC = EngineSpec("engines:StepEngine")


@contextlib.contextmanager
def tiny_fs(path: Path, size: str):
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(folder: Path) -> Path:
    """Take every free byte of ``folder``'s filesystem."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 4096)
    return filler


def test_uploads_and_submits_on_a_full_disk(tmp_path):
    data = tmp_path / "srv"
    with tiny_fs(data / "files", "1m"):
        server = LiveServer.start(data, engine=None, args=["--workers", "0", "--engine", "engines:StepEngine"])
        try:
            with server.http() as c:
                big = os.urandom(2 * 1024 * 1024)
                answers = [
                    c.post("/files/upload", content=big, headers={"Content-Type": "image/png"}),
                ]
                grant = c.post("/storage/upload/initiate", json={"file_name": "a.png", "content_type": "image/png"})
                answers.append(c.put(grant.json()["upload_url"], content=big))
                for r in answers:
                    assert r.status_code == 507, r.text
                    assert isinstance(r.json()["detail"], str) and str(data) not in r.text
                    assert int(r.headers["retry-after"]) > 0
                # A data URI is stored as a file at submit: no room, so 503 + Retry-After.
                uri = "data:image/png;base64," + base64.b64encode(os.urandom(1536 * 1024)).decode()
                r = c.post(f"/queue/{V2}", json={"prompt": "frames=3", "image_url": uri})
                assert r.status_code == 503, r.text
                assert int(r.headers["retry-after"]) > 0 and isinstance(r.json()["detail"], str)
                assert str(data) not in r.text
                # The failed writes left nothing behind: a small upload fits again.
                r = c.post("/files/upload", content=b"x" * 10_000, headers={"Content-Type": "text/plain"})
                assert r.status_code == 200, r.text
        finally:
            server.stop()


def test_a_generation_that_runs_out_of_space_is_requeued_not_failed(tmp_path):
    db = f"sqlite:///{tmp_path / 'jobs.db'}"
    settings = Settings(data_dir=tmp_path, database_url=db, engine=SPEC)
    store = JobStore(db)
    plan = ENDPOINTS[V2].plan({"prompt": "frames=24", "image_url": IMAGE})
    job = store.enqueue(endpoint_id=V2, input={}, plan=plan.to_json(), engine=SPEC.to_json(),
                        base_url="http://127.0.0.1:1")
    with tiny_fs(tmp_path / "tmp", "256k") as tmp:  # where the worker renders
        filler = fill(tmp)
        worker = Worker(settings, store, open_storage(settings))
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                messages = [entry["message"] for entry in store.logs(job.id)]
                if any("no space left" in m for m in messages):
                    break
                assert store.get(job.id).status != FAILED, messages
                time.sleep(0.2)
            else:
                raise AssertionError(f"no out-of-space attempt within 90 s: {messages}")
            assert store.get(job.id).status != FAILED
            assert store.get(job.id).attempts <= 1  # a full disk is not the worker dying
            filler.unlink()
            deadline = time.monotonic() + 90
            while not store.get(job.id).terminal and time.monotonic() < deadline:
                time.sleep(0.2)
            final = store.get(job.id)
            assert final.status == SUCCEEDED, (final.status, final.error)
            messages = [entry["message"] for entry in store.logs(job.id)]
            assert not any(str(tmp_path) in m for m in messages), messages
            assert thread.is_alive()
        finally:
            worker.stop()
            thread.join(30)
            store.close()
