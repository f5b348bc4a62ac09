"""The job store on real SQLite and real PostgreSQL: claim, leases, fencing, cancel, deadlines, outbox."""

from __future__ import annotations

import threading
import time

import pytest

from stillreel.jobs.keys import Keys
from stillreel.jobs.schema import (
    CANCELED, CANCELING, FAILED, PRIORITIES, QUEUED, RUNNING, SUCCEEDED, TIMED_OUT, Failure, QueueFull,
)


def submit(store, priority="normal", **kw):
    return store.enqueue(endpoint_id="fal-ai/kling-video/v2/master/image-to-video", input={}, plan={},
                         engine={"name": "motion"}, base_url="http://127.0.0.1:1", priority=PRIORITIES[priority], **kw)


def test_priority_then_submit_order_and_positions(store):
    a = submit(store, "low")
    b = submit(store)
    c = submit(store, "high")
    d = submit(store)
    assert [store.position(j) for j in (c, b, d, a)] == [0, 1, 2, 3]
    order = [store.claim("w", 30).id for _ in range(4)]
    assert order == [c.id, b.id, d.id, a.id]
    assert store.claim("w", 30) is None


def test_concurrent_claims_never_share_a_job(store):
    jobs = {submit(store).id for _ in range(30)}
    claimed: list[str] = []
    lock = threading.Lock()

    def claimer(name):
        while (job := store.claim(name, 30)) is not None:
            with lock:
                claimed.append(job.id)

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(jobs)


def test_expired_lease_requeues_and_fences_the_old_worker(store):
    submit(store)
    first = store.claim("w1", lease_s=0.2)
    time.sleep(0.3)
    assert store.maintain(max_attempts=3) == 1
    assert store.get(first.id).status == QUEUED
    second = store.claim("w2", 30)
    assert second.id == first.id and second.attempts == 2
    # The first worker comes back: every write it tries is refused.
    assert store.heartbeat(first, 30, 0.9) is None
    assert store.finish(first, result={"video": {"url": "stale"}}) is False
    assert store.finish(second, result={"video": {"url": "fresh"}}) is True
    done = store.get(first.id)
    assert done.status == SUCCEEDED and done.result == {"video": {"url": "fresh"}}


def test_lost_too_often_fails_as_runner_disconnected(store):
    job = submit(store)
    for attempt in range(2):
        store.claim(f"w{attempt}", lease_s=0.01)
        time.sleep(0.05)
        store.maintain(max_attempts=2)
    ended = store.get(job.id)
    assert ended.status == FAILED and ended.error_type == "runner_disconnected" and ended.error_status == 503


def test_terminal_states_are_final(store):
    submit(store)
    job = store.claim("w", 30)
    assert store.finish(job, failure=Failure(422, [{"loc": ["body"], "msg": "bad", "type": "x"}], "x"))
    assert store.cancel(job.id) == "ALREADY_COMPLETED"
    assert store.finish(job, result={"video": {}}) is False
    assert store.get(job.id).status == FAILED


def test_cancel_in_every_state(store):
    queued = submit(store)
    assert store.cancel(queued.id) == "CANCELLATION_REQUESTED"
    assert store.get(queued.id).status == CANCELED
    assert store.get(queued.id).error_type == "request_cancelled"
    running = submit(store)
    job = store.claim("w", 30)
    assert job.id == running.id
    assert store.cancel(running.id) == "CANCELLATION_REQUESTED"
    assert store.heartbeat(job, 30) == CANCELING
    assert store.finish(job, cancelled=True)
    assert store.get(running.id).status == CANCELED
    assert store.cancel(running.id) == "ALREADY_COMPLETED"
    assert store.cancel("00000000-0000-0000-0000-000000000000") == "NOT_FOUND"


def test_start_deadline_expires_queued_requests(store):
    late = submit(store, start_deadline=time.time() - 1)
    fine = submit(store, start_deadline=time.time() + 60)
    store.maintain(max_attempts=3)
    assert store.get(late.id).status == TIMED_OUT
    assert store.get(late.id).error_type == "request_timeout"
    assert store.get(fine.id).status == QUEUED


def test_queue_length_limit(store):
    submit(store, max_queue=2)
    submit(store, max_queue=2)
    with pytest.raises(QueueFull):
        submit(store, max_queue=2)


def test_logs_and_progress_flow_through_heartbeats(store):
    submit(store)
    job = store.claim("w", 30)
    assert store.get(job.id).status == RUNNING
    store.heartbeat(job, 30, 0.25, [(time.time(), "INFO", "rendering frame 30/120")])
    store.heartbeat(job, 30, 0.5, [(time.time(), "INFO", "rendering frame 60/120")])
    assert store.get(job.id).progress == 0.5
    logs = store.logs(job.id)
    assert [entry["message"] for entry in logs] == ["rendering frame 30/120", "rendering frame 60/120"]
    assert store.logs(job.id, after=logs[0]["seq"])[0]["message"] == "rendering frame 60/120"


def test_webhook_outbox_is_written_with_the_terminal_state(store):
    hooked = submit(store, webhook_url="http://127.0.0.1:9/hook")
    plain = submit(store)
    for _ in range(2):
        job = store.claim("w", 30)
        store.finish(job, result={"video": {"url": "u"}})
    rows = store.outbox(hooked.id)
    assert len(rows) == 1 and '"status": "OK"' in rows[0]["body"]
    assert store.outbox(plain.id) == []
    taken = store.outbox_claim()
    assert [r["request_id"] for r in taken] == [hooked.id]
    assert store.outbox_claim() == []  # held while being delivered


def test_keys_are_hashed_and_revocable(store):
    keys = Keys(store)
    key = keys.create("ci")
    key_id, secret = key.split(":")
    assert keys.verify(key) == key_id
    assert keys.verify(f"{key_id}:wrong") is None
    token, expires = keys.issue_token(key_id)
    assert keys.verify_token(token) == key_id and expires.tzinfo is not None
    assert keys.verify_token(token[:-2] + "xx") is None
    with store.read() as conn:
        stored = conn.exec_driver_sql("select secret_hash from api_keys").scalar()
    assert secret not in stored
    assert keys.revoke(key_id)
    keys._cache.clear()
    assert keys.verify(key) is None and keys.verify_token(token) is None
