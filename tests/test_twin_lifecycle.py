"""Twin protocol extras: fal's object lifecycle, ``--retention``, and temporary tokens' signatures
(the token flow itself runs in the real @fal-ai/client: tests/js/tokens.test.mjs)."""

import json
import shutil
import sys
import time

import pytest
from test_s3 import MOTO, _open, bucket, moto  # noqa: F401 (moto and bucket are fixtures)
from twin_helpers import V1, png_data_uri, twin, wait_status


# -- object lifecycle and retention ---------------------------------------------------------------


def test_object_lifecycle_on_uploads_and_outputs(tmp_path):
    # The real fal_client asks for a 2 s upload and 3 s outputs; 10 s later both answer 404 and the
    # background sweep has removed their bytes.
    code = ("import json, time, httpx, fal_client\n"
            "from fal_client.client import StorageSettings\n"
            "t0 = time.monotonic()\n"
            "url = fal_client.upload(b'short-lived', 'text/plain', lifecycle=StorageSettings(expires_in=2))\n"
            "fresh = httpx.get(url).status_code\n"
            "out = fal_client.subscribe('fal-ai/kling-video/v1/standard/image-to-video', arguments={'prompt': 'x', "
            "'image_url': %r}, headers={'X-Fal-Object-Lifecycle-Preference': json.dumps({'expiration_duration_seconds': 3})})\n"
            "video = out['video']['url']\n"
            "kept = httpx.get(video).status_code\n"
            "time.sleep(max(0, 10 - (time.monotonic() - t0)))\n"
            "print(json.dumps({'upload': url, 'video': video, 'fresh': fresh, 'kept': kept, "
            "'upload_later': httpx.get(url).status_code, 'video_later': httpx.get(video).status_code}))\n"
            ) % png_data_uri()
    data = tmp_path / "data"
    proc = twin(sys.executable, "-c", code, options=("--data-dir", str(data)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (out["fresh"], out["kept"]) == (200, 200), out
    assert (out["upload_later"], out["video_later"]) == (404, 404), out
    for url in (out["upload"], out["video"]):
        assert not (data / "files" / url.split("/files/", 1)[1]).exists(), url


def test_signed_upload_carries_the_initiate_lifecycle(tmp_path):
    import time

    import httpx

    from live_server import LiveServer

    with LiveServer.start(tmp_path / "srv", auth=False) as srv:
        lifecycle = json.dumps({"expiration_duration_seconds": 1})
        grant = httpx.post(f"{srv.url}/storage/upload/initiate?storage_type=fal-cdn-v3",
                           json={"file_name": "a.txt", "content_type": "text/plain"},
                           headers={"X-Fal-Object-Lifecycle": lifecycle}).json()
        assert httpx.put(grant["upload_url"], content=b"hi", headers={"Content-Type": "text/plain"}).status_code == 200
        keep = httpx.post(f"{srv.url}/files/upload", content=b"kept", headers={"Content-Type": "text/plain"}).json()
        assert httpx.get(grant["file_url"]).status_code == 200
        time.sleep(1.5)
        gone = httpx.get(grant["file_url"])
        assert gone.status_code == 404 and gone.json() == {"detail": "File not found"}
        assert httpx.get(keep["access_url"]).status_code == 200


def test_retention_sweep_removes_old_requests_and_files(tmp_path):
    import os
    import time

    from stillreel.jobs.store import JobStore
    from stillreel.storage.lifecycle import Lifecycle
    from stillreel.storage.local import LocalStorage

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    store, storage = JobStore(url), LocalStorage(tmp_path / "files")

    def finished_request() -> str:
        job, _ = store.submit(endpoint_id="fal-ai/kling-video/v1/standard/image-to-video", input={}, plan={},
                              engine={}, base_url="http://x")
        store.finish(store.claim("w", 30), result={"video": {"url": "http://x/files/b/00000000/x_a.mp4"}},
                     logs=[(time.time(), "INFO", "done")])
        return job.id

    old_id, old_file = finished_request(), storage.put_bytes(b"old", file_name="old.txt", content_type="text/plain")
    day = 86400
    os.utime(storage.local_path(old_file.key), (time.time() - 3 * day,) * 2)
    lifecycle = Lifecycle(store, storage, retention_s=2 * day)
    # The sweep's clock runs 3 days ahead for the request (its finished_at is now); files go by mtime.
    done = lifecycle.sweep(now=time.time() + 3 * day)
    assert done["requests"] == 1 and done["files"] >= 1, done
    fresh_store = JobStore(url)  # a new store: no in-process cache of finished requests
    assert fresh_store.get(old_id) is None and fresh_store.logs(old_id) == []
    assert storage.stat(old_file.key) is None

    new_id, new_file = finished_request(), storage.put_bytes(b"new", file_name="new.txt", content_type="text/plain")
    assert lifecycle.sweep()["requests"] == 0
    assert JobStore(url).get(new_id) is not None and storage.stat(new_file.key) is not None


def test_serve_retention_option_sweeps_in_the_background(tmp_path):
    import time

    import httpx

    from live_server import LiveServer

    # 0.00005 days = 4.3 s
    with LiveServer.start(tmp_path / "srv", auth=False, engine="engines:StepEngine",
                          args=["--retention", "0.00005"]) as srv:
        job = httpx.post(srv.url + V1, json={"prompt": "frames=4", "image_url": png_data_uri()}).json()
        wait_status(job["status_url"], lambda s: s["status"] == "COMPLETED")
        video = httpx.get(job["response_url"]).json()["video"]["url"]
        assert httpx.get(video).status_code == 200
        gone = wait_status(job["status_url"] + "?logs=1", lambda s: "status" not in s, timeout=20)
        assert gone == {"detail": "Request not found"}
        deadline = time.monotonic() + 10
        while httpx.get(video).status_code != 404:
            assert time.monotonic() < deadline, "the video outlived --retention"
            time.sleep(0.2)


def test_token_signature_scope_and_expiry():
    from stillreel.api.tokens import app_of, claims_of, issue

    secret, now = b"k" * 32, 1_000_000
    token = issue(secret, "key1", ["kling-video"], 120, now=now)
    assert claims_of(secret, token, now=now + 119)["sub"] == "key1"
    assert claims_of(secret, token, now=now + 120) is None  # expired
    assert claims_of(b"x" * 32, token, now=now) is None  # another server's secret
    header, payload, signature = token.split(".")
    forged = issue(b"attacker", "key1", ["*"], 9999, now=now).split(".")[1]
    assert claims_of(secret, f"{header}.{forged}.{signature}", now=now) is None
    assert app_of("/queue/fal-ai/kling-video/requests/x/status/stream") == "fal-ai/kling-video"
    assert app_of("/workflows/me/flow/requests/x/status/stream") == "me/flow"


@pytest.mark.skipif(not MOTO.exists() and not shutil.which("moto_server"), reason="needs moto[server]")
def test_s3_old_files_lists_stored_files_by_age(moto, bucket, tmp_path):  # noqa: F811
    storage = _open(moto, bucket, tmp_path)
    stored = storage.put_bytes(b"x", file_name="a.txt", content_type="text/plain")
    part = tmp_path / "part"
    part.write_bytes(b"p" * 10)
    storage.put_part("0" * 32, 1, part)  # a staged multipart part is not a stored file
    assert list(storage.old_files(3600)) == []
    assert list(storage.old_files(0, now=time.time() + 60)) == [stored.key]
