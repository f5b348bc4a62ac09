"""A fault test across machines: PostgreSQL, S3, two API hosts and three worker hosts, each in its own
network namespace (tests/cluster.py), with 500 requests carrying webhooks while the test

- cuts a worker host's link mid-job, past its lease, and restores it;
- restarts PostgreSQL;
- kills an API host (kill -9 of every process on it);
- kills a worker host.

Then it checks what a deployment promises: every request COMPLETED (succeeded) exactly once, one
output object for each and no other object in the bucket, every request's webhook delivered, each
once except those in flight on the killed API host at the moment it died (at-least-once delivery,
as fal's), and every outbox row delivered.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from cluster import Cluster, available

REPO = Path(__file__).resolve().parent.parent
PG_BIN = Path("/usr/lib/postgresql/15/bin")
MOTO = Path(sys.executable).parent / "moto_server"
N = int(os.environ.get("STILLREEL_CLUSTER_REQUESTS", 500))
LEASE_S = 4

why_not = available() or (None if (PG_BIN / "postgres").exists() else "needs PostgreSQL 15 binaries") or (
    None if MOTO.exists() else "needs moto[server]")
pytestmark = [pytest.mark.skipif(why_not is not None, reason=why_not or ""), pytest.mark.slow]


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen in {timeout} s")
        time.sleep(0.2)


def _progress(path: Path) -> float:
    try:
        done, total = path.read_text().split()
        return int(done) / max(1, int(total))
    except (OSError, ValueError):
        return 0.0


@pytest.fixture
def pgdata():
    # pytest's tmp_path is private to root; the postgres user needs a path it can reach.
    top = Path(tempfile.mkdtemp(prefix="stillreel-cluster-"))
    top.chmod(0o755)
    data = top / "pg"
    data.mkdir()
    shutil.chown(data, "postgres", "postgres")
    yield data
    shutil.rmtree(top, ignore_errors=True)


def test_500_requests_survive_link_cuts_database_restart_and_host_kills(tmp_path, pgdata):
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1", "PYTHONUNBUFFERED": "1"}
    tag = str(os.getpid() % 10000)
    with Cluster.create(tag) as net:
        db, s3 = net.host("db", 2), net.host("s3", 3)
        apis = [net.host("api1", 11), net.host("api2", 12)]
        workers = [net.host("w1", 21), net.host("w2", 22), net.host("w3", 23)]
        client = net.host("cl", 100)

        # PostgreSQL on the db host, reachable from the cluster's subnet only.
        subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "initdb"), "-D", str(pgdata), "-U", "postgres",
                        "--auth=trust"], check=True, capture_output=True)
        with open(pgdata / "postgresql.conf", "a") as conf:
            conf.write(f"\nlisten_addresses = '{db.address}'\nport = 5432\nunix_socket_directories = '{pgdata}'\n"
                       "max_connections = 200\nfsync = off\n")
        with open(pgdata / "pg_hba.conf", "a") as hba:
            hba.write("host all all 127.77.0.0/16 trust\n")

        def start_postgres():
            net.spawn(db, [str(PG_BIN / "postgres"), "-D", str(pgdata)], user="postgres", log=logs / "pg.log")
            _wait(lambda: net.run(client, [str(PG_BIN / "pg_isready"), "-h", db.address, "-q"]).returncode == 0,
                  30, "PostgreSQL start")

        start_postgres()
        made = net.run(client, [str(PG_BIN / "createdb"), "-h", db.address, "-U", "postgres", "stillreel"])
        assert made.returncode == 0, made.stderr
        db_url = f"postgresql://postgres@{db.address}:5432/stillreel"
        net.spawn(s3, [str(MOTO), "-H", s3.address, "-p", "5000"], log=logs / "s3.log")
        s3_url = f"http://{s3.address}:5000"
        storage_url = f"s3://cluster/v?endpoint={quote(s3_url, safe='')}&region=us-east-1"
        common = ["--database-url", db_url, "--storage-url", storage_url, "--allow-private-urls",
                  "--engine", "engines:StepEngine", "--lease-seconds", str(LEASE_S)]
        cli = [sys.executable, "-c", "import sys; sys.argv[0] = 'stillreel'; from stillreel.cli import app; app()"]
        for api in apis:
            net.spawn(api, [*cli, "serve", "--host", api.address, "--port", "8000", "--workers", "0", "--no-auth",
                            "--data-dir", str(tmp_path / api.name), "--webhook-backoff", "1,1,2,2,4,4,8",
                            *common], env=env, log=logs / f"{api.name}.log", cwd=str(REPO))
        for worker in workers:
            net.spawn(worker, [*cli, "worker", "--data-dir", str(tmp_path / worker.name), *common], env=env,
                      log=logs / f"{worker.name}.log", cwd=str(REPO))
        for api in apis:
            probe = f"import httpx; httpx.get('http://{api.address}:8000/healthz', timeout=2).raise_for_status()"
            _wait(lambda probe=probe: net.run(client, [sys.executable, "-c", probe]).returncode == 0,
                  60, f"{api.name} start")

        progress, out = tmp_path / "progress", tmp_path / "audit.json"
        driver = net.spawn(client, [sys.executable, str(REPO / "tests" / "cluster_driver.py"), "--me", client.address,
                                    *[a for api in apis for a in ("--api", f"http://{api.address}:8000")],
                                    "-n", str(N), "--db", db_url, "--s3", s3_url, "--bucket", "cluster",
                                    "--progress", str(progress), "--out", str(out)],
                           env=env, log=logs / "driver.log", cwd=str(REPO))

        def at(fraction: float) -> None:
            _wait(lambda: _progress(progress) >= fraction or driver.poll() is not None, 300, f"progress {fraction}")

        hit_at = {}  # how far the run was when each fault struck: they must hit work in progress

        at(0.1)
        hit_at["link cut"] = _progress(progress)
        net.cut(workers[0])  # mid-job, past its lease: the job goes to another worker
        time.sleep(LEASE_S * 2)
        net.restore(workers[0])
        at(0.3)
        hit_at["database restart"] = _progress(progress)
        subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(pgdata), "-m", "fast",
                        "-w", "stop"], check=True, capture_output=True)
        db.processes.clear()
        time.sleep(3)
        start_postgres()
        at(0.5)
        hit_at["api host killed"] = _progress(progress)
        net.kill(apis[1])
        at(0.7)
        hit_at["worker host killed"] = _progress(progress)
        net.kill(workers[2])
        driver.wait(700)

        def tail(name: str) -> str:
            path = logs / name
            return path.read_text(errors="replace")[-3000:] if path.exists() else ""

        assert driver.returncode == 0, tail("driver.log")
        audit = json.loads(out.read_text())
        diagnosis = json.dumps({k: audit[k] for k in ("statuses", "attempts", "outbox", "rows", "elapsed_s")}) + \
            "\n" + "\n".join(f"--- {n}\n{tail(n)}" for n in ("w1.log", "w2.log", "api1.log"))

        assert all(p < 0.95 for p in hit_at.values()), f"faults struck after the work was done: {hit_at}"
        accepted = audit["accepted"]
        assert len(accepted) == N, diagnosis
        # Every request, including any whose submit answer was lost with api2, completed exactly once.
        assert audit["statuses"] == {"SUCCEEDED": audit["rows"]}, diagnosis
        # The faults hit work in progress: requests held by the cut or killed worker ran again.
        assert sum(n for attempts, n in audit["attempts"].items() if int(attempts) > 1) >= 1, diagnosis
        assert set(accepted) <= set(audit["result_paths"]), diagnosis
        # One output object each, and no other object (no orphan from the cut worker's late attempt).
        keys = {key for key in audit["objects"] if not key.startswith("v/.uploads/")}
        wanted = {"v/" + path.removeprefix("/files/") for path in audit["result_paths"].values()}
        assert len(wanted) == audit["rows"] and keys == wanted, diagnosis
        # Webhooks: every accepted request called back with OK; duplicates only from deliveries in flight
        # on the killed API host.
        hooks = audit["webhooks"]
        assert all(hooks.get(rid) and set(hooks[rid]) == {"OK"} for rid in accepted), diagnosis
        duplicates = sum(len(v) - 1 for v in hooks.values())
        assert duplicates <= 16, diagnosis
        assert audit["outbox"] == {"delivered": audit["rows"]}, diagnosis
