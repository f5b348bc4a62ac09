"""Local file storage and fal's upload routes, over real HTTP on loopback.

The routes are driven the way the real clients drive them: plain httpx for the exact wire shapes,
and the real ``fal_client`` (Python) and ``@fal-ai/client`` (Node) upload code where cheap.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from storage_helpers import build_app, serve

from stillreel.config import Limits, Settings
from stillreel.storage import FileTooLarge, UploadError, open_storage
from stillreel.storage.grants import UploadGrant
from stillreel.storage.local import LocalStorage
from stillreel.storage.naming import key_in_url, safe_file_name, valid_key

REPO = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024


# -- the local store ------------------------------------------------------------------------


def test_put_and_read_back(tmp_path):
    store = LocalStorage(tmp_path / "files")
    stored = store.put_bytes(b"frame data", file_name="clip.mp4", content_type="video/mp4")
    parts = stored.key.split("/")
    assert parts[0] == "b" and len(parts[1]) == 8 and int(parts[1], 16) >= 0
    assert parts[2].endswith("_clip.mp4")
    assert (stored.size, stored.content_type, stored.file_name) == (10, "video/mp4", "clip.mp4")
    assert store.read_bytes(stored.key) == b"frame data"
    assert store.stat(stored.key) == stored
    assert (tmp_path / "files" / stored.key).read_bytes() == b"frame data"
    # Two uploads of the same name never collide.
    assert store.put_bytes(b"x", file_name="clip.mp4", content_type="video/mp4").key != stored.key


def test_put_file_copies_or_moves(tmp_path):
    store = LocalStorage(tmp_path / "files")
    src = tmp_path / "in.png"
    src.write_bytes(b"\x89PNG fake")
    copied = store.put_file(src, file_name=None, content_type="image/png")
    assert src.exists() and copied.file_name == "in.png" and copied.content_type == "image/png"
    moved = store.put_file(src, file_name="photo.png", content_type="image/png", move=True)
    assert not src.exists()
    assert store.read_bytes(moved.key) == b"\x89PNG fake"
    # Nothing is left behind in the staging area.
    assert list(store.staging_dir.iterdir()) == []


def test_read_limit_and_missing(tmp_path):
    store = LocalStorage(tmp_path / "files")
    stored = store.put_bytes(b"x" * 100, file_name="a.bin", content_type=None)
    with pytest.raises(FileTooLarge) as caught:
        store.read_bytes(stored.key, max_bytes=99)
    assert caught.value.size == 100
    assert store.read_bytes(stored.key, max_bytes=100) == b"x" * 100
    with pytest.raises(FileNotFoundError):
        store.read_bytes("b/00000000/nothing_here.png")


@pytest.mark.parametrize(
    "key", ["../secret", "b/../../etc/passwd", "/etc/passwd", ".tmp/x", "b/.uploads/x", "b//x", "", "b/x y"]
)
def test_unsafe_keys_are_refused(tmp_path, key):
    store = LocalStorage(tmp_path / "files")
    (tmp_path / "secret").write_text("no")
    assert not valid_key(key)
    assert store.stat(key) is None
    assert store.local_path(key) is None
    with pytest.raises(FileNotFoundError):
        store.read_bytes(key)
    with pytest.raises(FileNotFoundError):
        store.put_bytes(b"x", file_name="x", content_type=None, key=key)


def test_symlink_out_of_the_root_is_not_followed(tmp_path):
    store = LocalStorage(tmp_path / "files")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("no")
    (tmp_path / "files" / "b").mkdir()
    (tmp_path / "files" / "b" / "link").symlink_to(tmp_path / "outside")
    assert store.stat("b/link/secret.txt") is None


def test_file_names_are_made_safe_and_typed():
    assert safe_file_name("../../etc/passwd", "text/plain") == "passwd.txt"
    assert safe_file_name("my photo (1).JPG", "image/jpeg") == "my_photo_1_.JPG"
    assert safe_file_name(None, "image/png") == "upload.png"
    assert safe_file_name("upload.bin", "image/png") == "upload.bin.png"
    assert safe_file_name("clip.mp4", "application/octet-stream") == "clip.mp4"
    assert safe_file_name("...", None) == "upload"


def test_key_from_url_matches_any_host_alias(tmp_path):
    store = LocalStorage(tmp_path / "files")
    stored = store.put_bytes(b"img", file_name="a.png", content_type="image/png")
    assert store.url(stored.key, "http://127.0.0.1:8000/") == f"http://127.0.0.1:8000/files/{stored.key}"
    for url in [
        f"http://127.0.0.1:8000/files/{stored.key}",
        f"https://videos.example.com/files/{stored.key}?download=1",
        f"http://10.1.2.3/stillreel/files/{stored.key}",  # behind a path prefix
    ]:
        assert store.key_from_url(url) == stored.key, url
    assert store.key_from_url("http://127.0.0.1:8000/files/b/00000000/absent_a.png") is None
    assert store.key_from_url(f"ftp://host/files/{stored.key}") is None
    assert store.key_from_url("http://127.0.0.1:8000/files/../stillreel.db") is None
    assert key_in_url("http://h/other/path.png") is None


def test_multipart_joins_parts_in_part_order(tmp_path):
    store = LocalStorage(tmp_path / "files")
    etags = {}
    for n, body in [(2, b"BBB"), (1, b"AAA"), (3, b"CC")]:
        src = tmp_path / f"p{n}"
        src.write_bytes(body)
        etags[n] = store.put_part("a" * 32, n, src)
        assert etags[n] == f'"{hashlib.md5(body).hexdigest()}"'
    order = [(2, etags[2]), (3, etags[3]), (1, etags[1])]  # completion order, not sorted
    with pytest.raises(UploadError, match="part 3"):
        store.complete_multipart("a" * 32, [(3, '"0000"')], key="b/00000000/x_a.bin", file_name="a.bin",
                                 content_type=None)
    with pytest.raises(FileTooLarge):
        _too_big(store, tmp_path)
    stored = store.complete_multipart("a" * 32, order, key="b/00000000/x_a.bin", file_name="a.bin",
                                      content_type=None)
    assert store.read_bytes(stored.key) == b"AAABBBCC" and stored.size == 8
    assert not (tmp_path / "files" / ".uploads" / ("a" * 32)).exists()
    # A retried completion (its answer was lost) succeeds again.
    assert store.complete_multipart("a" * 32, order, key=stored.key, file_name="a.bin", content_type=None) == stored


def _too_big(store: LocalStorage, tmp_path: Path):
    src = tmp_path / "big"
    src.write_bytes(b"z" * 50)
    etag = store.put_part("c" * 32, 1, src)
    return store.complete_multipart("c" * 32, [(1, etag)], key="b/00000000/y_b.bin", file_name="b.bin",
                                    content_type=None, max_bytes=49)


def test_sweep_removes_abandoned_uploads(tmp_path):
    store = LocalStorage(tmp_path / "files")
    src = tmp_path / "p"
    src.write_bytes(b"part")
    store.put_part("d" * 32, 1, src)
    kept = store.put_bytes(b"keep", file_name="k.txt", content_type="text/plain")
    assert store.sweep(older_than_s=3600) == 0
    assert store.sweep(older_than_s=-1) == 1
    assert not (tmp_path / "files" / ".uploads" / ("d" * 32)).exists()
    assert store.read_bytes(kept.key) == b"keep"


def test_open_storage_picks_the_backend(tmp_path):
    assert isinstance(open_storage(Settings(data_dir=tmp_path)), LocalStorage)
    assert open_storage(Settings(data_dir=tmp_path)).root == (tmp_path / "files").resolve()
    assert open_storage(Settings(data_dir=tmp_path, storage_url=str(tmp_path / "elsewhere"))).root == (
        tmp_path / "elsewhere"
    ).resolve()
    with pytest.raises(ValueError, match="unsupported storage URL"):
        open_storage(Settings(data_dir=tmp_path, storage_url="gopher://x"))


def test_grants_are_signed_and_expire():
    grant = UploadGrant("b/00000000/x_a.png", "e" * 32, "image/png", "a.png", int(time.time()) + 60, True)
    token = grant.sign(b"secret")
    assert UploadGrant.verify(token, b"secret") == grant
    assert UploadGrant.verify(token, b"other secret") is None
    assert UploadGrant.verify(token, b"secret", now=time.time() + 61) is None
    payload, _, sig = token.partition(".")
    forged = UploadGrant("b/00000000/x_b.png", "e" * 32, "image/png", "b.png", grant.expires, True).sign(b"x")
    assert UploadGrant.verify(f"{forged.partition('.')[0]}.{sig}", b"secret") is None
    assert UploadGrant.verify("garbage", b"secret") is None


# -- the routes -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("srv")
    app, key = build_app(data_dir, LocalStorage(data_dir / "files"), limits=Limits(max_upload_bytes=2 * MiB))
    with serve(app, key) as served:
        yield served


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def _token(http, server) -> str:
    response = http.post("/storage/auth/token?storage_type=fal-cdn-v3", json={}, headers=server.auth)
    assert response.status_code == 200, response.text
    return response.json()["token"]


def test_token_shape(http, server):
    response = http.post("/storage/auth/token?storage_type=fal-cdn-v3", json={}, headers=server.auth)
    body = response.json()
    assert body["token_type"] == "Bearer" and body["token"]
    assert body["base_url"] == server.url
    expires = dt.datetime.fromisoformat(body["expires_at"])
    # fal_client compares it with an aware UTC datetime: a naive one raises TypeError there.
    assert expires.tzinfo is not None and expires > dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=30)
    assert http.post("/storage/auth/token?storage_type=gcs", json={}, headers=server.auth).status_code == 200


def test_upload_routes_need_credentials(http, server):
    assert http.post("/storage/auth/token", json={}).status_code == 401
    assert http.post("/files/upload", content=b"x").status_code == 401
    assert http.post("/files/upload", content=b"x", headers={"Authorization": "Bearer forged.1.x"}).status_code == 401
    assert http.post("/files/upload/multipart").status_code == 401
    assert http.post("/storage/upload/initiate", json={}).status_code == 401
    assert http.post("/storage/upload/initiate-multipart", json={}).status_code == 401


def test_single_upload_with_bearer_token(http, server):
    token = _token(http, server)
    body = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
    response = http.post(
        "/files/upload",
        content=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "image/png", "X-Fal-File-Name": "small.png"},
    )
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["uploaded"] is True and out["file_size"] == len(body) and out["content_type"] == "image/png"
    assert out["access_url"].startswith(f"{server.url}/files/b/") and out["access_url"].endswith("_small.png")
    got = httpx.get(out["access_url"])  # public: no credentials
    assert got.status_code == 200 and got.content == body
    assert got.headers["content-type"] == "image/png"
    assert "max-age=31536000" in got.headers["cache-control"]


def test_upload_over_the_limit_is_413(http, server):
    auth = {**server.auth, "Content-Type": "application/octet-stream"}
    declared = http.post("/files/upload", content=b"x" * (2 * MiB + 1), headers=auth)
    assert declared.status_code == 413
    assert "upload limit of 2 MiB" in declared.json()["detail"]

    def chunks():  # no Content-Length: the limit is enforced while streaming
        for _ in range(3):
            yield b"y" * MiB

    streamed = http.post("/files/upload", content=chunks(), headers=auth)
    assert streamed.status_code == 413
    staging = server.storage.staging_dir
    assert [p for p in staging.iterdir() if p.name.startswith("recv-")] == []


def test_python_style_multipart(http, server):
    token = _token(http, server)
    bearer = {"Authorization": f"Bearer {token}"}
    created = http.post(
        "/files/upload/multipart",
        headers={**bearer, "Content-Type": "video/mp4", "X-Fal-File-Name": "big.mp4", "Accept": "application/json"},
    )
    assert created.status_code == 200, created.text
    access_url, upload_id = created.json()["access_url"], created.json()["uploadId"]
    assert access_url.endswith("_big.mp4")
    chunks = {1: b"a" * 300_000, 2: b"b" * 300_000, 3: b"c" * 1000}
    parts = []
    for n in (3, 1, 2):  # out of order, as the parallel client finishes them
        put = http.put(f"{access_url}/multipart/{upload_id}/{n}", content=chunks[n],
                       headers={**bearer, "Content-Type": "video/mp4", "Accept-Encoding": "identity"})
        assert put.status_code == 200, put.text
        assert put.headers["etag"] == f'"{hashlib.md5(chunks[n]).hexdigest()}"'
        assert put.json() == {"partNumber": n, "etag": put.headers["etag"]}
        parts.append({"partNumber": n, "etag": put.headers["etag"]})
    complete_url = f"{access_url}/multipart/{upload_id}/complete"
    malformed = http.post(complete_url, json={"parts": [{"etag": "x"}]}, headers=bearer)
    assert malformed.status_code == 400 and "partNumber" in malformed.json()["detail"]
    wrong = http.post(complete_url, json={"parts": [{"partNumber": 1, "etag": '"nope"'}]}, headers=bearer)
    assert wrong.status_code == 400 and "part 1" in wrong.json()["detail"]
    done = http.post(complete_url, json={"parts": parts}, headers=bearer)
    assert done.status_code == 200, done.text
    assert done.json()["access_url"] == access_url
    got = httpx.get(access_url)
    assert got.content == chunks[1] + chunks[2] + chunks[3]
    assert got.headers["content-type"] == "video/mp4"


def test_multipart_grant_is_bound_to_its_file(http, server):
    token = _token(http, server)
    bearer = {"Authorization": f"Bearer {token}"}
    created = http.post("/files/upload/multipart", headers={**bearer, "X-Fal-File-Name": "a.bin"}).json()
    other = http.post("/files/upload/multipart", headers={**bearer, "X-Fal-File-Name": "b.bin"}).json()
    response = http.put(f"{other['access_url']}/multipart/{created['uploadId']}/1", content=b"x", headers=bearer)
    assert response.status_code == 403
    forged = created["uploadId"][:-4] + "AAAA"
    assert http.put(f"{created['access_url']}/multipart/{forged}/1", content=b"x", headers=bearer).status_code == 403


def test_js_style_signed_upload(http, server):
    init = http.post("/storage/upload/initiate?storage_type=fal-cdn-v3",
                     json={"content_type": "image/webp", "file_name": "1700000000.webp"}, headers=server.auth)
    assert init.status_code == 200, init.text
    upload_url, file_url = init.json()["upload_url"], init.json()["file_url"]
    assert "token=" in urlsplit(upload_url).query
    assert httpx.get(file_url).status_code == 404  # nothing there until the PUT
    put = httpx.put(upload_url, content=b"RIFF....WEBP", headers={"Content-Type": "image/webp"})  # no auth
    assert put.status_code == 200, put.text
    got = httpx.get(file_url)
    assert got.content == b"RIFF....WEBP" and got.headers["content-type"] == "image/webp"
    # Tampering with the grant or using a single-upload grant for parts is refused.
    parsed = urlsplit(upload_url)
    token = parse_qs(parsed.query)["token"][0]
    assert httpx.put(f"{server.url}{parsed.path}?token={token[:-3]}xyz", content=b"x").status_code == 403
    assert httpx.put(f"{server.url}{parsed.path}/1?{parsed.query}", content=b"x").status_code == 403
    assert httpx.put(f"{server.url}{parsed.path}", content=b"x").status_code == 403


def test_js_style_signed_multipart(http, server):
    init = http.post("/storage/upload/initiate-multipart?storage_type=fal-cdn-v3",
                     json={"content_type": "video/mp4", "file_name": "long.mp4"}, headers=server.auth)
    upload_url, file_url = init.json()["upload_url"], init.json()["file_url"]
    parsed = urlsplit(upload_url)
    origin = f"{parsed.scheme}://{parsed.netloc}"
    responses = []
    for n, chunk in [(1, b"1" * 1000), (2, b"2" * 10)]:
        # Exactly as @fal-ai/client builds it: `${origin}${pathname}/${n}${search}`, no headers.
        put = httpx.put(f"{origin}{parsed.path}/{n}?{parsed.query}", content=chunk)
        assert put.status_code == 200 and put.headers["content-type"] == "application/json"
        responses.append(put.json())
    assert [r["partNumber"] for r in responses] == [1, 2]
    done = httpx.post(f"{origin}{parsed.path}/complete?{parsed.query}", json={"parts": responses})
    assert done.status_code == 200, done.text
    assert httpx.get(file_url).content == b"1" * 1000 + b"2" * 10


def test_serving_range_head_and_missing(http, server):
    stored = server.storage.put_bytes(bytes(range(256)) * 4, file_name="v.mp4", content_type="video/mp4")
    url = f"/files/{stored.key}"
    part = http.get(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206
    assert part.content == bytes(range(10, 20)) and part.headers["content-range"] == "bytes 10-19/1024"
    head = http.head(url)
    assert head.status_code == 200 and head.headers["content-length"] == "1024" and head.content == b""
    assert head.headers["content-type"] == "video/mp4" and head.headers["accept-ranges"] == "bytes"
    assert http.get("/files/b/00000000/none_v.mp4").status_code == 404
    assert http.get("/files/.tmp/anything").status_code == 404
    assert http.get("/files/%2e%2e/stillreel.db").status_code == 404


def test_auth_off_needs_no_credentials(tmp_path):
    app, key = build_app(tmp_path, LocalStorage(tmp_path / "files"), auth=False)
    with serve(app, key) as served, httpx.Client(base_url=served.url) as client:
        token = client.post("/storage/auth/token", json={}).json()
        assert token["token_type"] == "Bearer"
        out = client.post("/files/upload", content=b"free", headers={"Content-Type": "text/plain"}).json()
        assert httpx.get(out["access_url"]).content == b"free"
        init = client.post("/storage/upload/initiate", json={"file_name": "n.txt", "content_type": "text/plain"})
        assert httpx.put(init.json()["upload_url"], content=b"ok").status_code == 200


def test_public_url_setting_builds_file_urls(tmp_path):
    app, key = build_app(tmp_path, LocalStorage(tmp_path / "files"), public_url="https://media.example.com/")
    with serve(app, key) as served, httpx.Client(base_url=served.url, headers=served.auth) as client:
        out = client.post("/files/upload", content=b"x", headers={"Content-Type": "text/plain"}).json()
        assert out["access_url"].startswith("https://media.example.com/files/b/")
        assert served.storage.key_from_url(out["access_url"]) is not None


# -- the real clients -----------------------------------------------------------------------


def test_real_fal_client_uploads(server, tmp_path, monkeypatch):
    import fal_client
    import fal_client.client as fc

    # fal-protocol.md §11.1 P4: the unmodified package pointed at this server.
    monkeypatch.setattr(fc, "REST_URL", server.url)
    monkeypatch.setattr(fc, "CDN_URL", server.url)
    client = fal_client.SyncClient(key=server.key)

    image = tmp_path / "small.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"p" * 5000)
    url = client.upload_file(image)
    assert url.endswith("_small.png") and httpx.get(url).content == image.read_bytes()

    url = client.upload(b"plain text", "text/plain")  # no file name: named after its type
    assert url.endswith("_upload.txt") and httpx.get(url).content == b"plain text"

    url = client.upload(b"via initiate", "text/plain", "h.txt", repository="fal")  # the fallback route
    assert url.endswith("_h.txt") and httpx.get(url).content == b"via initiate"

    # The real multipart code (parallel, out-of-order parts, ETag header), with small parts.
    data = bytes(range(256)) * 1200  # 300 KiB
    with httpx.Client(headers={"Authorization": f"Bearer {_token(httpx.Client(base_url=server.url), server)}"}) as cdn:
        url = fc.MultipartUpload.save(client=cdn, token_manager=fc.CDNTokenManager(client._auth), file_name="m.bin",
                                      data=data, content_type="application/octet-stream", chunk_size=64 * 1024,
                                      max_concurrency=4)
    assert httpx.get(url).content == data


@pytest.mark.skipif(shutil.which("node") is None or not (REPO / "tests/js/node_modules/@fal-ai/client").is_dir(),
                    reason="needs node and tests/js/node_modules (npm ci in tests/js)")
def test_real_js_client_upload(server):
    script = """
    import { createFalClient } from "@fal-ai/client";
    const [base, key] = process.argv.slice(1);
    const fal = createFalClient({
      credentials: key,
      requestMiddleware: async (req) => ({ ...req, url: req.url.replace("https://rest.fal.ai", base) }),
    });
    const url = await fal.storage.upload(new Blob([new Uint8Array([1, 2, 3, 250])], { type: "image/png" }));
    console.log(JSON.stringify({ url }));
    """
    done = subprocess.run(["node", "--input-type=module", "-e", script, server.url, server.key],
                          cwd=REPO / "tests/js", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    url = json.loads(done.stdout.strip().splitlines()[-1])["url"]
    got = httpx.get(url)
    assert got.content == bytes([1, 2, 3, 250]) and got.headers["content-type"] == "image/png"
