"""Group commit of submits (stillreel/jobs/submits.py) on SQLite and PostgreSQL: the submits waiting
together share one transaction, and each gets the row, position and errors it would have got alone."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import event
from conftest import store_url
from sqlalchemy.exc import IntegrityError

from stillreel.config import Settings
from stillreel.jobs.schema import PRIORITIES, QueueFull
from stillreel.jobs.store import JobStore
from stillreel.jobs.submits import _Submit


def fields(priority="normal", **kw):
    return dict(endpoint_id="fal-ai/kling-video/v2/master/image-to-video", input={"prompt": "p", "n": [1, 2]},
                plan={"kind": "i2v"}, engine={"name": "motion"}, base_url="http://127.0.0.1:1",
                priority=PRIORITIES[priority], key_id=None, webhook_url=None, start_deadline=None, max_queue=None,
                hold_until=None) | kw


def entry(priority="normal", max_queue=None, **kw) -> _Submit:
    f = fields(priority, **kw)
    values = {k: f[k] for k in ("endpoint_id", "priority", "input", "plan", "engine", "base_url", "key_id",
                                "webhook_url", "start_deadline")}
    values.update(id=kw.get("id") or f"id-{time.monotonic_ns()}-{priority}", status="QUEUED", attempts=0,
                  progress=0.0, created_at=time.time(), lease_until=None)
    return _Submit(values, max_queue)


def test_the_returned_job_is_the_stored_row(store):
    job, position = store.submit(**fields(key_id="k1", webhook_url="https://example.com/h", start_deadline=123.5,
                                          hold_until=99.25))
    assert position == 0
    assert store.get(job.id) == job
    assert job.lease_until == 99.25 and job.attempts == 0 and job.status == "QUEUED"


def test_concurrent_submits_get_every_position_once_in_submit_order(store):
    results = []
    lock = threading.Lock()

    def submitter():
        for _ in range(15):
            out = store.submit(**fields())
            with lock:
                results.append(out)

    threads = [threading.Thread(target=submitter) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    by_seq = sorted(results, key=lambda r: r[0].seq)
    assert [position for _, position in by_seq] == list(range(120))
    for job, position in by_seq[::17]:
        assert store.get(job.id) == job and store.position(job) == position  # nothing claimed yet


def test_waiting_submits_share_one_transaction(store, monkeypatch):
    inserts = []
    event.listen(store.db, "before_cursor_execute",
                 lambda conn, cursor, sql, *rest: inserts.append(1) if "INSERT INTO requests" in sql else None)
    writer = store._submits
    writing, release = threading.Event(), threading.Event()
    real_write = writer._write

    def slow_first_write(group):  # the first group is being written while five more submits arrive
        if not writing.is_set():
            writing.set()
            release.wait(30)
        real_write(group)

    monkeypatch.setattr(writer, "_write", slow_first_write)
    out = []
    first = threading.Thread(target=lambda: out.append(store.submit(**fields())))
    first.start()
    assert writing.wait(30)
    threads = [threading.Thread(target=lambda: out.append(store.submit(**fields()))) for _ in range(5)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while writer._queue.qsize() < 5:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    release.set()
    for t in [first, *threads]:
        t.join()
    assert len(inserts) == 2  # the first alone, then one statement (and one transaction) for the five
    assert sorted(position for _, position in out) == [0, 1, 2, 3, 4, 5]


def test_submits_from_the_event_loop_share_one_transaction(store):
    import asyncio

    inserts = []
    event.listen(store.db, "before_cursor_execute",
                 lambda conn, cursor, sql, *rest: inserts.append(1) if "INSERT INTO requests" in sql else None)

    async def many():
        return await asyncio.gather(*(store.submit_async(**fields()) for _ in range(20)))

    out = asyncio.run(many())
    assert sorted(position for _, position in out) == list(range(20))
    assert all(store.get(job.id) == job for job, _ in out)
    assert len(inserts) < 20  # queued while the first group was written: they shared transactions


def test_positions_in_a_group_are_those_of_submits_one_after_the_other(store):
    store.submit(**fields("normal"))  # already queued: ahead of every normal and low submit
    group = [entry("normal"), entry("high"), entry("normal"), entry("low"), entry("high")]
    store._submits._write(group)
    # one after the other: 1 (the queued one), 0, 3 (two normal + one high), 4, 1 (the first high)
    assert [e.position for e in group] == [1, 0, 3, 4, 1]
    assert all(e.error is None and store.get(e.job.id) == e.job for e in group)
    # the last one's is still what the store computes now (the others moved behind later highs)
    assert store.position(group[4].job) == 1 and store.position(group[3].job) == 5


def test_max_queue_counts_the_submits_before_it_in_the_same_group(store):
    store.submit(**fields())
    group = [entry(max_queue=3), entry(max_queue=3), entry(max_queue=3), entry()]
    store._submits._write(group)
    assert [type(e.error).__name__ if e.error else e.position for e in group] == [1, 2, "QueueFull", 3]
    assert group[2].error.length == 3 and group[2].job is None
    with pytest.raises(QueueFull):
        store.submit(**fields(max_queue=4))


def test_a_failed_transaction_fails_every_submit_of_the_group(store):
    taken, _ = store.submit(**fields())
    group = [entry(), entry(id=taken.id)]  # the second breaks the unique id: the insert fails whole
    store._submits._write(group)
    assert all(isinstance(e.error, IntegrityError) and e.job is None for e in group)
    assert store.get(group[0].values["id"]) is None
    # and the writer goes on
    assert store.submit(**fields())[1] == 1


def test_no_connection_fails_every_submit_of_the_group(store, monkeypatch):
    from sqlalchemy.exc import OperationalError

    def away():
        raise OperationalError("connect", {}, ConnectionRefusedError("the database is away"))

    monkeypatch.setattr(store, "write", away)
    monkeypatch.setattr(store.db, "connect", away)  # PostgreSQL's one-statement path
    for group in ([entry(), entry(max_queue=0)], [entry(), entry()]):
        store._submits._write(group)
        assert all(isinstance(e.error, OperationalError) and e.job is None for e in group)
    with pytest.raises(OperationalError):
        store.submit(**fields())


def test_another_process_hears_of_a_submit_and_a_claim_at_once(database_url):
    """``changes.QueueWatch``: the submit or claim of another process (here: another store, its
    own connections) sets this process's worker wake-up and bumps its change generation."""
    from stillreel.jobs.changes import Changes, QueueWatch

    url = Settings(database_url=database_url).db_url if "postgres" in database_url else database_url
    here, there = JobStore(url), JobStore(url)
    changes, wake = Changes(), threading.Event()
    watch = QueueWatch(here, changes, [wake])
    watch.start()
    try:
        deadline = time.monotonic() + 30
        while watch.heard == 0 and not here.sqlite:  # PostgreSQL: listening (it notes that once)
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.1)  # SQLite: the watch has read the version once
        wake.clear()
        before = changes.generation
        there.submit(**fields())
        assert wake.wait(30), "the submit of another process was not heard"
        assert changes.generation > before
        # A claim moves the queue and ends a queued answer: heard too (API replicas' fast paths).
        time.sleep(0.1)
        wake.clear()
        assert there.claim("w", 30) is not None
        assert wake.wait(30), "the claim of another process was not heard"
    finally:
        watch.stop()
        here.close()
        there.close()


def test_an_error_reaches_a_submit_from_the_event_loop(store, monkeypatch):
    import asyncio

    from sqlalchemy.exc import OperationalError

    def away():
        raise OperationalError("connect", {}, ConnectionRefusedError("the database is away"))

    with monkeypatch.context() as patch:
        patch.setattr(store, "write", away)
        patch.setattr(store.db, "connect", away)
        with pytest.raises(OperationalError):  # the writer thread's error, raised in the awaiting task
            asyncio.run(store.submit_async(**fields()))
    assert store.submit(**fields())[1] == 0  # and the writer goes on


def test_a_closed_store_refuses_submits_instead_of_hanging(database_url):
    s = JobStore(store_url(database_url))
    job, _ = s.submit(**fields())
    s.close()  # the writer finished what was queued and stopped
    with pytest.raises(RuntimeError, match="closed"):
        # a clear error: a submit racing close could land behind the writer's stop and wait for ever
        s.submit(**fields())
    again = JobStore(s.url)
    assert again.get(job.id) == job
    again.close()


def test_request_ids_are_random_version_4_uuids_and_differ_after_fork():
    """``new_request_id`` hands out ids read in batches: each a valid uuid4, none twice, and a
    forked process (uvicorn's workers, the worker's child) must not repeat its parent's batch."""
    import os
    import uuid

    from stillreel.jobs.submits import new_request_id

    ids = [new_request_id() for _ in range(2000)]  # several batches
    assert len(set(ids)) == len(ids)
    for text in ids[:300]:
        parsed = uuid.UUID(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == text
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the next ids it makes, to the parent
        os.close(read)
        os.write(write, " ".join(new_request_id() for _ in range(5)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read().split()
    os.waitpid(pid, 0)
    parent = [new_request_id() for _ in range(5)]
    assert len(child) == 5 and not set(child) & set(parent)


def _depth(store) -> dict[int, int]:
    with store.read() as conn:
        kept = dict(conn.exec_driver_sql("SELECT priority, queued FROM queue_depth WHERE queued != 0").all())
        counted = dict(conn.exec_driver_sql(
            "SELECT priority, count(*) FROM requests WHERE status = 'QUEUED' GROUP BY priority").all())
    return kept, counted


def test_sqlite_queue_depth_follows_every_way_in_and_out_of_the_queue(tmp_path):
    """SQLite keeps the queue's length per priority in ``queue_depth`` by triggers; submits read their
    positions from it. After every kind of change (submit, claim, release, cancel, lease expiry,
    start deadline, retention delete, another process's writes) it must equal a count."""
    url = f"sqlite:///{tmp_path / 'q.db'}"
    here, there = JobStore(url), JobStore(url)
    try:
        def check():
            kept, counted = _depth(here)
            assert kept == counted

        jobs = [here.submit(**fields(p))[0] for p in ("normal", "high", "normal", "low", "normal")]
        check()
        claimed = here.claim("w", 30)
        check()
        assert here.release(claimed)
        check()
        here.cancel(jobs[3].id)
        check()
        running = there.claim("w2", 0.01)  # another process; its lease runs out at once
        time.sleep(0.05)
        check()
        here.maintain(max_attempts=3)  # re-queued
        check()
        there.submit(**fields("normal", start_deadline=time.time() - 1))
        check()
        here.maintain(max_attempts=3)  # the start deadline passed: out of the queue
        check()
        done = here.claim("w", 30)
        here.finish(done, result={"video": {}})
        check()
        with here.write() as conn:  # retention deletes finished rows; and a queued one, by hand
            conn.exec_driver_sql("DELETE FROM requests WHERE status != 'QUEUED'")
            conn.exec_driver_sql(f"DELETE FROM requests WHERE id = '{jobs[0].id}'")
        check()
        with here.write() as conn:
            conn.exec_driver_sql(f"UPDATE requests SET priority = 0 WHERE id = '{jobs[2].id}'")
        check()
        assert running is not None
        positions = [here.submit(**fields(p))[1] for p in ("high", "low")]
        kept, _ = _depth(here)
        assert positions == [kept[PRIORITIES["high"]] - 1, sum(kept.values()) - 1]
    finally:
        here.close()
        there.close()


def test_sqlite_submits_do_not_count_the_queue(tmp_path):
    url = f"sqlite:///{tmp_path / 'q.db'}"
    store = JobStore(url)
    scans = []
    event.listen(store.db, "before_cursor_execute",
                 lambda conn, cursor, sql, *rest: scans.append(sql) if "FROM requests" in sql else None)
    try:
        assert [store.submit(**fields())[1] for _ in range(50)] == list(range(50))
        assert scans == []  # positions from queue_depth: the same cost at any queue length
    finally:
        store.close()


def test_a_database_made_before_queue_depth_gets_it_filled_in(tmp_path):
    url = f"sqlite:///{tmp_path / 'q.db'}"
    store = JobStore(url)
    for p in ("normal", "normal", "high", "low"):
        store.submit(**fields(p))
    with store.write() as conn:  # as an older version left it: no table, no triggers
        for name in ("queue_depth_insert", "queue_depth_delete", "queue_depth_update"):
            conn.exec_driver_sql(f"DROP TRIGGER {name}")
        conn.exec_driver_sql("DROP TABLE queue_depth")
        conn.exec_driver_sql("INSERT INTO requests (id, endpoint_id, status, priority, input, plan, engine, base_url, "
                             "attempts, progress, created_at) VALUES ('old', 'e', 'QUEUED', 1, '{}', '{}', '{}', 'b', 0, 0, 1)")
    store.close()
    store = JobStore(url)
    try:
        kept, counted = _depth(store)
        assert kept == counted == {PRIORITIES["normal"]: 3, PRIORITIES["high"]: 1, PRIORITIES["low"]: 1}
        assert store.submit(**fields("normal"))[1] == 4  # high 1 + normal 3 ahead
    finally:
        store.close()


def test_sqlite_seqs_of_a_group_are_the_stored_ones(tmp_path):
    url = f"sqlite:///{tmp_path / 'q.db'}"
    store = JobStore(url)
    try:
        store.submit(**fields())
        group = [entry() for _ in range(20)]
        store._submits._write(group)
        seqs = [e.job.seq for e in group]
        assert seqs == sorted(seqs) and len(set(seqs)) == 20
        assert all(store.get(e.job.id).seq == e.job.seq for e in group)
    finally:
        store.close()
