"""Worker-side faults: an expired start deadline is never claimed, a dead worker shows in /healthz,
partial videos of killed workers are swept, and an attempt that lost its lease leaves no file."""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path

import pytest
from apihelp import IMAGE, V2

from stillreel.config import Settings
from stillreel.endpoints.registry import ENDPOINTS
from stillreel.engines import EngineSpec
from stillreel.jobs.messages import Done
from stillreel.jobs.schema import RUNNING
from stillreel.jobs.store import JobStore
from stillreel.jobs.worker import Worker
from stillreel.storage import open_storage

SPEC = EngineSpec("engines:StepEngine")


def enqueue(store: JobStore, prompt: str = "frames=3", **kw):
    plan = ENDPOINTS[V2].plan({"prompt": prompt, "image_url": IMAGE})
    return store.enqueue(endpoint_id=V2, input={}, plan=plan.to_json(), engine=SPEC.to_json(),
                         base_url="http://127.0.0.1:1", **kw)


def stored_files(root: Path) -> list[Path]:
    return [p for p in (root / "b").rglob("*") if p.is_file()] if (root / "b").exists() else []


def test_claim_skips_a_request_past_its_start_deadline(store):
    # An idle worker polls claim() more often than maintain() expires deadlines: it must not
    # start a request whose caller has already been told (or is about to be) that it timed out.
    late = enqueue(store, start_deadline=time.time() - 1)
    fresh = enqueue(store, start_deadline=time.time() + 60)
    assert store.claim("w", 30).id == fresh.id
    assert store.claim("w", 30) is None
    assert store.get(late.id).status == "QUEUED"
    store.maintain(3)
    assert store.get(late.id).status == "TIMED_OUT"


def test_healthz_and_readyz_report_a_dead_worker(tmp_path):
    from fastapi.testclient import TestClient

    from stillreel.api.app import create_app

    settings = Settings(data_dir=tmp_path, auth=False, workers=1, engine=EngineSpec("fault_engines:BrokenEngine"))
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 60
        while (r := client.get("/healthz")).status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert r.status_code == 503, r.json()
        body = r.json()
        assert body["ok"] is False and body["workers"] == 0 and body["workers_configured"] == 1
        assert body["database"] == "ok"
        # Ready all the same: the database answers, and an API replica may serve without workers.
        assert client.get("/readyz").json() == {"ready": True}


def test_partial_videos_of_killed_workers_are_swept_at_start(tmp_path):
    db = f"sqlite:///{tmp_path / 'jobs.db'}"
    settings = Settings(data_dir=tmp_path, database_url=db, engine=SPEC)
    store = JobStore(db)
    running = enqueue(store)
    claimed = store.claim("another-worker", 3600)  # alive elsewhere, rendering for hours
    assert claimed.id == running.id
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    old = time.time() - 2 * 3600
    files = {
        "legacy": tmp / "tmpab12cd.mp4",  # named by the old code
        "ended": tmp / f"gen-{uuid.uuid4()}-1-x1.mp4",  # its request is unknown/finished
        "requeued": tmp / f"gen-{running.id}-0-x2.mp4",  # an earlier attempt of a running request
        "live": tmp / f"gen-{running.id}-1-x3.mp4",  # the running attempt's own file
        "fresh": tmp / f"gen-{uuid.uuid4()}-1-x4.mp4",  # too young to judge
        "staging": tmp / "recv-upload",  # not a render: S3 staging shares the folder
    }
    for name, path in files.items():
        path.write_bytes(b"\0" * 1024)
        if name != "fresh":
            os.utime(path, (old, old))
    worker = Worker(settings, store, open_storage(settings))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while files["legacy"].exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        left = {name for name, path in files.items() if path.exists()}
        assert left == {"live", "fresh", "staging"}
    finally:
        worker.stop()
        thread.join(30)
        store.close()


def _lease_taken_over(store: JobStore, job) -> None:
    """What happens to a worker stalled past its lease: its job is re-queued and claimed anew."""
    with store.write() as conn:
        from stillreel.jobs.schema import requests

        conn.execute(requests.update().where(requests.c.id == job.id).values(lease_until=time.time() - 1))
    assert store.maintain(3) == 1
    assert store.claim("the-new-owner", 30).id == job.id


def _a_rendered_video(worker: Worker, name: str = "out.mp4") -> Path:
    worker.tmp.mkdir(parents=True, exist_ok=True)
    path = worker.tmp / name
    path.write_bytes(b"\0\0\0\x18ftypmp42" + b"\0" * 4096)
    return path


def test_a_worker_that_lost_its_lease_stores_nothing(tmp_path):
    db = f"sqlite:///{tmp_path / 'jobs.db'}"
    settings = Settings(data_dir=tmp_path, database_url=db, engine=SPEC)
    store = JobStore(db)
    storage = open_storage(settings)
    worker = Worker(settings, store, storage, name="stalled")
    enqueue(store)
    job = store.claim(worker.id, 30)
    _lease_taken_over(store, job)
    worker._finish(job, Done({"frames": 3}), _a_rendered_video(worker), [])
    assert stored_files(storage.root) == []
    now = store.get(job.id)
    assert now.status == RUNNING and now.worker_id == "the-new-owner" and now.result is None
    store.close()


class TakenOverWhileUploading:
    """Storage whose upload is slow enough for the lease to be taken over meanwhile (the fence
    was still ours when the upload began; the finish after it is refused)."""

    def __init__(self, inner, store, job):
        self.inner, self.store, self.job = inner, store, job

    def put_file(self, *args, **kwargs):
        stored = self.inner.put_file(*args, **kwargs)
        _lease_taken_over(self.store, self.job)
        return stored

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_the_upload_of_an_attempt_whose_finish_is_refused_is_deleted(tmp_path):
    db = f"sqlite:///{tmp_path / 'jobs.db'}"
    settings = Settings(data_dir=tmp_path, database_url=db, engine=SPEC)
    store = JobStore(db)
    storage = open_storage(settings)
    enqueue(store)
    job = store.claim("stalled", 30)
    worker = Worker(settings, store, TakenOverWhileUploading(storage, store, job), name="stalled")
    worker._finish(job, Done({"frames": 3}), _a_rendered_video(worker), [])
    assert stored_files(storage.root) == []
    assert store.get(job.id).worker_id == "the-new-owner"
    store.close()


def test_a_failed_generation_does_not_name_server_paths(tmp_path):
    from fault_engines import MissingFileEngine

    spec = EngineSpec("fault_engines:MissingFileEngine")
    db = f"sqlite:///{tmp_path / 'jobs.db'}"
    settings = Settings(data_dir=tmp_path, database_url=db, engine=spec)
    store = JobStore(db)
    plan = ENDPOINTS[V2].plan({"prompt": "p", "image_url": IMAGE})
    job = store.enqueue(endpoint_id=V2, input={}, plan=plan.to_json(), engine=spec.to_json(),
                        base_url="http://127.0.0.1:1")
    worker = Worker(settings, store, open_storage(settings))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not store.get(job.id).terminal and time.monotonic() < deadline:
            time.sleep(0.2)
        final = store.get(job.id)
        assert final.status == "FAILED" and "No such file" in str(final.error)
        assert MissingFileEngine.PATH not in str(final.error)
        assert not any(MissingFileEngine.PATH in e["message"] for e in store.logs(job.id))
    finally:
        worker.stop()
        thread.join(30)
        store.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the death we cause
def test_an_embedded_worker_thread_that_dies_is_restarted(tmp_path):
    from fastapi.testclient import TestClient

    from stillreel.api.app import create_app

    settings = Settings(data_dir=tmp_path, auth=False, workers=1, engine=SPEC)
    app = create_app(settings)
    services = app.state.services
    worker = services.workers[0]
    real_run, deaths = worker.run, []

    def dies_once():  # a thread killed by something no except clause catches
        if not deaths:
            deaths.append(1)
            raise SystemExit
        real_run()

    worker.run = dies_once
    with TestClient(app) as client:
        job = enqueue(services.store, "frames=3")
        deadline = time.monotonic() + 60
        while not services.store.get(job.id).terminal and time.monotonic() < deadline:
            time.sleep(0.2)
        assert deaths and services.store.get(job.id).status == "SUCCEEDED"
        assert client.get("/healthz").json()["workers"] == 1
