"""What each credential opens, and for how long (issue #10's low items), against a live server:

- an upload token (``POST /storage/auth/token``, fal's CDN credential) uploads files and nothing else;
- a key revoked by another process (``stillreel keys revoke``) stops working within about a second,
  not after the key cache's 5 s;
- a signed upload URL is single-use: replaying it cannot swap the bytes behind a URL already handed out.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import httpx
import pytest
from live_server import LiveServer, create_key

from stillreel.jobs.keys import Keys
from stillreel.jobs.store import JobStore

STATUS = "/fal-ai/kling-video/requests/00000000-0000-0000-0000-000000000000/status"
SUBMIT = "/queue/fal-ai/kling-video/v1/standard/image-to-video"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with LiveServer.start(tmp_path_factory.mktemp("creds"), engine="engines:StepEngine") as srv:
        yield srv


def _upload_token(server) -> str:
    with server.http() as http:
        response = http.post("/storage/auth/token?storage_type=fal-cdn-v3", json={})
    assert response.status_code == 200, response.text
    return response.json()["token"]


def test_an_upload_token_uploads_and_opens_nothing_else(server):
    bearer = {"Authorization": f"Bearer {_upload_token(server)}"}
    uploaded = httpx.post(f"{server.url}/files/upload", content=b"\x89PNG fake", timeout=30,
                          headers={**bearer, "Content-Type": "image/png", "X-Fal-File-Name": "a.png"})
    assert uploaded.status_code == 200, uploaded.text
    # The same token is no API key: submit and status answer 401 as for no credentials at all.
    submit = httpx.post(f"{server.url}{SUBMIT}", json={"prompt": "x", "image_url": uploaded.json()["access_url"]},
                        headers=bearer, timeout=30)
    assert submit.status_code == 401, submit.text
    assert httpx.get(f"{server.url}{STATUS}", headers=bearer, timeout=30).status_code == 401
    # The key itself still reaches them (404: no such request, so auth passed).
    assert httpx.get(f"{server.url}{STATUS}", headers=server.headers, timeout=30).status_code == 404


def test_upload_tokens_live_an_hour_not_a_week(server):
    with server.http() as http:
        expires = http.post("/storage/auth/token?storage_type=fal-cdn-v3", json={}).json()["expires_at"]
    from datetime import datetime, timezone

    left = (datetime.fromisoformat(expires) - datetime.now(timezone.utc)).total_seconds()
    assert 0 < left <= 3600 + 5


def test_a_key_revoked_by_another_process_stops_within_a_second(server):
    key = create_key(server.data_dir)
    headers = {"Authorization": f"Key {key}"}
    # Warm the server's key cache (5 s) with a success, then revoke at once from another process's
    # connection to the same database, as `stillreel keys revoke` does.
    assert httpx.get(f"{server.url}{STATUS}", headers=headers, timeout=30).status_code == 404
    store = JobStore(f"sqlite:///{server.data_dir / 'stillreel.db'}")
    try:
        assert Keys(store).revoke(key.split(":")[0])
    finally:
        store.close()
    revoked_at = time.monotonic()
    while httpx.get(f"{server.url}{STATUS}", headers=headers, timeout=30).status_code != 401:
        assert time.monotonic() - revoked_at < 2.5, "the revoked key still works after 2.5 s (cache: 5 s)"
        time.sleep(0.05)


def test_a_signed_upload_url_is_single_use(server):
    with server.http() as http:
        init = http.post("/storage/upload/initiate?storage_type=fal-cdn-v3",
                         json={"content_type": "image/png", "file_name": "once.png"})
    assert init.status_code == 200, init.text
    upload_url, file_url = init.json()["upload_url"], init.json()["file_url"]
    first = httpx.put(upload_url, content=b"first bytes", headers={"Content-Type": "image/png"}, timeout=30)
    assert first.status_code == 200, first.text
    replay = httpx.put(upload_url, content=b"swapped", headers={"Content-Type": "image/png"}, timeout=30)
    assert replay.status_code == 403 and "single-use" in replay.json()["detail"]
    assert httpx.get(file_url, timeout=30).content == b"first bytes"
    assert urlsplit(file_url).path.startswith("/files/")
