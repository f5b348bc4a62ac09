"""Orphan outputs (issue #10): a video stored by an attempt that can no longer record it — its worker
was cut off past its lease or killed between upload and finish — is found and deleted; a video that
is, or may yet be, recorded is left alone. On SQLite and PostgreSQL, with real files."""

from __future__ import annotations

import time


from stillreel.jobs import uploads
from stillreel.jobs.schema import PRIORITIES
from stillreel.storage.local import LocalStorage


def _running(store):
    store.enqueue(endpoint_id="fal-ai/kling-video/v2/master/image-to-video", input={}, plan={},
                  engine={"name": "motion"}, base_url="http://127.0.0.1:1", priority=PRIORITIES["normal"])
    return store.claim("w1", lease_s=0.05)


def _upload(store, storage, job, name="out.mp4"):
    stored = storage.put_bytes(b"video", file_name=name, content_type="video/mp4")
    uploads.note(store, job.id, job.attempts, stored.key)
    return stored.key


def test_an_upload_of_a_running_attempt_is_left_alone(store, tmp_path):
    storage = LocalStorage(tmp_path / "files")
    job = _running(store)
    key = _upload(store, storage, job)
    assert uploads.orphans(store, grace_s=0) == []
    assert uploads.sweep(store, storage) == 0 and storage.stat(key) is not None


def test_the_upload_of_an_attempt_that_lost_the_request_is_deleted(store, tmp_path):
    storage = LocalStorage(tmp_path / "files")
    job = _running(store)
    key = _upload(store, storage, job)
    time.sleep(0.1)
    store.maintain(3)  # the lease ran out: re-queued
    again = store.claim("w2", lease_s=30)  # and taken by another worker (attempt 2)
    assert again.id == job.id and again.attempts == job.attempts + 1
    assert not store.finish(job, result={"video": {"url": f"http://x/files/{key}"}})  # fenced out
    assert uploads.orphans(store, grace_s=0) == [key]
    assert uploads.sweep(store, storage, grace_s=0) == 1
    assert storage.stat(key) is None and uploads.orphans(store, grace_s=0) == []


def test_a_recorded_upload_whose_note_was_not_settled_is_kept(store, tmp_path):
    storage = LocalStorage(tmp_path / "files")
    job = _running(store)
    key = _upload(store, storage, job)
    assert store.finish(job, result={"video": {"url": f"http://x/files/{key}"}})
    assert uploads.orphans(store, grace_s=0) == []  # the row names the file: not an orphan
    # A second upload of the same finished attempt (recorded elsewhere) is an orphan.
    extra = _upload(store, storage, job, name="extra.mp4")
    assert uploads.orphans(store, grace_s=0) == [extra]


def test_young_notes_wait_for_the_grace_period(store, tmp_path):
    storage = LocalStorage(tmp_path / "files")
    job = _running(store)
    key = _upload(store, storage, job)
    store.finish(job, result={"video": {"url": "http://x/files/another"}})
    assert uploads.orphans(store) == []  # within GRACE_S: its upload may still be under way
    assert uploads.orphans(store, now=time.time() + uploads.GRACE_S + 1) == [key]
