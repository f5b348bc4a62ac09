"""A PostgreSQL restart of a few seconds: workers (threads and ``stillreel worker``) ride it out and
then finish everything queued; the API answers 503 + Retry-After in fal's shape meanwhile (never a
bare 500), /healthz and /readyz say so, and everything recovers when the database is back.

The "restart" is a TCP proxy between stillreel and the shared server (tests/tcp_proxy.py): cutting
it closes every connection and refuses new ones, as a restarting server does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import httpx
import pytest
from apihelp import IMAGE, V2, submit, wait
from live_server import CLI_COMMAND, REPO, LiveServer
from tcp_proxy import TcpProxy

from stillreel.config import Settings
from stillreel.endpoints.registry import ENDPOINTS
from stillreel.engines import EngineSpec
from stillreel.jobs.schema import RUNNING, SUCCEEDED
from stillreel.jobs.store import JobStore
from stillreel.jobs.worker import Worker
from stillreel.storage import open_storage

pytestmark = pytest.mark.postgres
SPEC = EngineSpec("engines:StepEngine")
OUTAGE_S = 3.0


def enqueue(store: JobStore, prompt: str):
    plan = ENDPOINTS[V2].plan({"prompt": prompt, "image_url": IMAGE})
    return store.enqueue(endpoint_id=V2, input={}, plan=plan.to_json(), engine=SPEC.to_json(),
                         base_url="http://127.0.0.1:1")


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout} s")


def test_a_worker_thread_rides_out_a_database_restart(postgres, tmp_path):
    direct = Settings(database_url=postgres).db_url
    proxy, via = TcpProxy.for_url(direct)
    setup = JobStore(direct)
    jobs = [enqueue(setup, "frames=16 delay=0.05") for _ in range(6)]
    settings = Settings(data_dir=tmp_path, database_url=via, engine=SPEC, lease_s=15)
    store = JobStore(settings.db_url)
    worker = Worker(settings, store, open_storage(settings))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: any(setup.get(j.id).status == RUNNING for j in jobs), 60, "a job running")
        proxy.cut()  # mid-job: its heartbeat, then its finish, meet the outage
        time.sleep(OUTAGE_S)
        assert thread.is_alive(), "the worker thread died in the outage"
        proxy.restore()
        wait_for(lambda: all(setup.get(j.id).terminal for j in jobs), 120, "every job finished")
        assert [setup.get(j.id).status for j in jobs] == [SUCCEEDED] * len(jobs)
        assert thread.is_alive() and worker.live()
    finally:
        worker.stop()
        thread.join(30)
        proxy.close()
        store.close()
        setup.close()


def _worker_process(data, url):
    return subprocess.Popen(
        [*CLI_COMMAND, "worker", "--data-dir", str(data), "--engine", "engines:StepEngine", "--lease-seconds", "15"],
        cwd=REPO, env={**os.environ, "STILLREEL_DATABASE_URL": url}, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )


def test_the_api_and_the_worker_command_ride_out_a_database_restart(postgres, tmp_path):
    proxy, via = TcpProxy.for_url(postgres)
    env = {"STILLREEL_DATABASE_URL": via}
    api = LiveServer.start(tmp_path / "api", engine=None, args=["--workers", "1", "--engine", "engines:StepEngine"],
                           env=env)
    worker = _worker_process(tmp_path / "api", via)  # one data folder: files are shared
    try:
        with api.http(timeout=30) as c:
            before = [submit(c, prompt="frames=16 delay=0.05") for _ in range(6)]
            wait(c, before[0], until=("IN_PROGRESS", "COMPLETED"), timeout=60)
            proxy.cut()
            time.sleep(0.5)
            try:
                # Submit, status (both the fast path and the full stack), health: 503 in fal's shape.
                r = c.post(f"/queue/{V2}", json={"prompt": "frames=3", "image_url": IMAGE})
                assert r.status_code == 503 and int(r.headers["retry-after"]) > 0, r.text
                assert isinstance(r.json()["detail"], str)
                for params in ({}, {"logs": "1"}):
                    r = c.get(before[-1]["status_url"], params=params)
                    assert r.status_code == 503 and "retry-after" in r.headers, r.text
                    assert isinstance(r.json()["detail"], str)
                r = c.get(before[-1]["status_url"], headers={"Origin": "http://example.test"})
                assert r.status_code == 503, r.text
                r = c.get("/readyz")
                assert r.status_code == 503 and r.json()["ready"] is False
                r = c.get("/healthz")
                assert r.status_code == 503 and r.json()["ok"] is False
                time.sleep(OUTAGE_S - 0.5)
                assert worker.poll() is None, f"stillreel worker exited {worker.returncode}"
            finally:
                proxy.restore()
            after = [submit(c, prompt="frames=4") for _ in range(3)]  # once back, submits work again
            for sub in before + after:
                status = wait(c, sub, timeout=120)
                assert status["error"] is None, status
                assert c.get(sub["response_url"]).status_code == 200
            assert c.get("/readyz").status_code == 200
            health = wait_for(lambda: (h := c.get("/healthz")).status_code == 200 and h.json(), 30, "healthy")
            assert health["workers"] == health["workers_configured"] == 1
            assert worker.poll() is None, f"stillreel worker exited {worker.returncode}"
        log = api.log_text(1_000_000)
        # Once per outage, not once per attempt (the worker retried many times meanwhile).
        assert log.count("housekeeping: the database is unreachable") == 1, log[-5000:]
        assert log.count(": the database is unreachable") <= 4, log[-5000:]
        assert "unhandled" not in log, log[-5000:]
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
        err = worker.communicate(timeout=30)[1]
        api.stop()
        proxy.close()
    # One warning when the outage starts and one when it ends, not one per attempt.
    assert err.count("database is unreachable") <= 4, err[-3000:]


def test_readyz_answers_while_the_database_is_up(postgres, tmp_path):
    with LiveServer.start(tmp_path, engine=None, args=["--workers", "0", "--engine", "engines:StepEngine"],
                          env={"STILLREEL_DATABASE_URL": postgres}) as srv:
        assert httpx.get(f"{srv.url}/readyz").json() == {"ready": True}


def test_the_worker_command_started_during_an_outage_waits_for_the_database(postgres, tmp_path):
    direct = Settings(database_url=postgres).db_url
    proxy, via = TcpProxy.for_url(postgres)
    proxy.cut()
    worker = _worker_process(tmp_path, via)
    setup = None
    try:
        time.sleep(3)
        assert worker.poll() is None, f"stillreel worker exited {worker.returncode}"
        proxy.restore()
        setup = JobStore(direct)
        job = enqueue(setup, "frames=4")
        wait_for(lambda: setup.get(job.id).terminal, 90, "the job finished")
        assert setup.get(job.id).status == SUCCEEDED
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
        worker.communicate(timeout=30)
        proxy.close()
        if setup is not None:
            setup.close()
