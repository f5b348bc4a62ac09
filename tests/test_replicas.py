"""API replicas starting together on one empty PostgreSQL database agree on the server's secrets.

Each replica creates the schema and the webhook signing key on first use. Done as get → put → get
(or a plain CREATE TABLE), two processes racing on an empty database either fail or end up signing
webhooks with different keys; receivers verifying against one replica's JWKS then reject the other's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from stillreel.config import Settings
from stillreel.jobs.schema import make_engine, metadata

pytestmark = pytest.mark.postgres

REPLICA = """
import json, sys, time
from stillreel.jobs.keys import Keys, server_secret
from stillreel.jobs.store import JobStore
from stillreel.jobs.webhooks import Signer
start = float(sys.argv[2])
while time.time() < start:
    pass
store = JobStore(sys.argv[1])
signer = Signer(store)
print(json.dumps({"kid": signer.kid, "jwks": signer.jwks(), "upload": str(server_secret(store, "upload_token"))}))
"""


def _start_replicas(url: str, count: int) -> list[dict]:
    start = time.time() + 1.5  # every process is imported and spinning before the gun
    procs = [subprocess.Popen([sys.executable, "-c", REPLICA, url, str(start)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(count)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, f"a replica failed to start:\n{err[-2000:]}"
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def test_replicas_on_an_empty_database_sign_with_one_key(postgres):
    url = Settings(database_url=postgres).db_url
    engine = make_engine(url)
    try:
        for _ in range(4):
            metadata.drop_all(engine)  # an empty database each round: the race is at creation
            replicas = _start_replicas(url, 4)
            assert len({r["kid"] for r in replicas}) == 1, replicas
            assert len({json.dumps(r["jwks"], sort_keys=True) for r in replicas}) == 1
            assert len({r["upload"] for r in replicas}) == 1
    finally:
        metadata.drop_all(engine)
        engine.dispose()


def test_the_key_survives_a_restart(postgres):
    url = Settings(database_url=postgres).db_url
    first = _start_replicas(url, 1)[0]
    again = _start_replicas(url, 2)
    assert {r["kid"] for r in again} == {first["kid"]}
