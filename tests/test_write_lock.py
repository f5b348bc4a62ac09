"""SQLite's write lock across processes (stillreel/jobs/write_lock.py): a real flock, re-entrant in a
thread, taken by every write transaction of the job store."""

from __future__ import annotations

import subprocess
import sys
import time

from stillreel.jobs.store import JobStore
from stillreel.jobs.write_lock import WriteLock, lock_file

HOLDER = """
import sys, time
from stillreel.jobs.write_lock import WriteLock
lock = WriteLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
time.sleep(float(sys.argv[2]))
print(time.time(), flush=True)
lock.release()
"""


def test_another_process_holding_it_excludes_this_one(tmp_path):
    path = str(tmp_path / "db.writelock")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, path, "1.0"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        lock = WriteLock(path)
        lock.acquire()  # blocks until the other process lets go
        got = time.time()
        released = float(holder.stdout.readline())
        assert got >= released - 0.01, (got, released)
        lock.release()
    finally:
        holder.wait(10)
        lock.close()


def test_reentrant_in_one_thread_and_free_after_the_outermost_release(tmp_path):
    path = str(tmp_path / "db.writelock")
    lock = WriteLock(path)
    lock.acquire()
    lock.acquire()  # nested: a write inside a write, as the store's helpers do
    lock.release()
    probe = [sys.executable, "-c", "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); "
             "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)", path]
    assert subprocess.run(probe, capture_output=True).returncode != 0  # still held (outer acquire)
    lock.release()
    assert subprocess.run(probe, capture_output=True).returncode == 0  # free
    lock.close()


def test_the_job_store_locks_a_file_beside_its_sqlite_database(tmp_path):
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    assert lock_file(url) == str(tmp_path / "jobs.db.writelock")
    assert lock_file("sqlite://") is None and lock_file("sqlite:///:memory:") is None
    store = JobStore(url)
    try:
        with store.write():
            probe = [sys.executable, "-c", "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); "
                     "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)", lock_file(url)]
            assert subprocess.run(probe, capture_output=True).returncode != 0  # held during a write
    finally:
        store.close()
