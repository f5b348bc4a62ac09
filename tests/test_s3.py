"""The S3 backend against a real S3 API (moto's server on loopback), directly and through the routes."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import httpx
import pytest
from storage_helpers import build_app, serve

from stillreel.config import Settings
from stillreel.storage import FileTooLarge, UploadError, open_storage
from stillreel.storage.s3 import S3Storage

MOTO = Path(sys.executable).parent / "moto_server"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}
MiB = 1024 * 1024

pytestmark = pytest.mark.skipif(not MOTO.exists() and not shutil.which("moto_server"), reason="needs moto[server]")


@pytest.fixture(scope="module")
def moto():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [str(MOTO) if MOTO.exists() else "moto_server", "-H", "127.0.0.1", "-p", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(endpoint, timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        with pytest.MonkeyPatch.context() as env:
            for name, value in CREDENTIALS.items():
                env.setenv(name, value)
            yield endpoint
    finally:
        process.terminate()
        process.wait(10)


_bucket_count = 0


@pytest.fixture
def bucket(moto):
    global _bucket_count
    _bucket_count += 1
    name = f"stillreel-test-{_bucket_count}"
    boto3.client("s3", endpoint_url=moto, region_name="us-east-1").create_bucket(Bucket=name)
    return name


def _objects(moto: str, bucket: str) -> list[str]:
    listed = boto3.client("s3", endpoint_url=moto, region_name="us-east-1").list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def _open(moto, bucket, tmp_path, **options) -> S3Storage:
    query = "&".join([f"endpoint={moto}", "region=us-east-1", *[f"{k}={v}" for k, v in options.items()]])
    storage = open_storage(Settings(data_dir=tmp_path, storage_url=f"s3://{bucket}/media/v1?{query}"))
    assert isinstance(storage, S3Storage)
    return storage


def test_put_read_stat_and_prefix(moto, bucket, tmp_path):
    storage = _open(moto, bucket, tmp_path)
    stored = storage.put_bytes(b"png bytes", file_name="in.png", content_type="image/png")
    assert stored.key.startswith("b/") and stored.file_name == "in.png" and stored.size == 9
    assert _objects(moto, bucket) == [f"media/v1/{stored.key}"]
    head = boto3.client("s3", endpoint_url=moto, region_name="us-east-1").head_object(
        Bucket=bucket, Key=f"media/v1/{stored.key}"
    )
    assert head["ContentType"] == "image/png"
    assert storage.read_bytes(stored.key) == b"png bytes"
    assert storage.stat(stored.key).size == 9
    assert storage.stat("b/00000000/missing_x.png") is None
    with pytest.raises(FileTooLarge):
        storage.read_bytes(stored.key, max_bytes=8)
    with pytest.raises(FileNotFoundError):
        storage.read_bytes("../escape")
    assert b"".join(storage.iter_range(stored.key, 2, 5)) == b"g b"

    src = tmp_path / "clip.mp4"
    src.write_bytes(b"v" * (9 * MiB))  # over one 8 MiB chunk: obstore writes it in parts
    moved = storage.put_file(src, file_name="clip.mp4", content_type="video/mp4", move=True)
    assert not src.exists() and moved.size == 9 * MiB
    assert storage.read_bytes(moved.key) == b"v" * (9 * MiB)

    url = storage.url(stored.key, "http://api.local:8000")
    assert url == f"http://api.local:8000/files/{stored.key}"
    assert storage.key_from_url(url) == stored.key
    assert storage.key_from_url("http://api.local:8000/files/b/00000000/missing_x.png") is None
    storage.delete(stored.key)
    assert storage.stat(stored.key) is None


def test_multipart_staged_in_the_bucket(moto, bucket, tmp_path):
    storage = _open(moto, bucket, tmp_path)
    upload_id = "f" * 32
    etags = {}
    for n, body in [(2, b"second"), (1, b"first-"), (2, b"SECOND")]:  # part 2 retried
        src = tmp_path / f"part{n}"
        src.write_bytes(body)
        etags[n] = storage.put_part(upload_id, n, src)
        assert not src.exists()
    assert len([k for k in _objects(moto, bucket) if "/.uploads/" in k]) == 2
    with pytest.raises(UploadError):
        storage.complete_multipart(upload_id, [(1, etags[1]), (3, '"x"')], key="b/00000000/k_j.bin",
                                   file_name="j.bin", content_type=None)
    with pytest.raises(FileTooLarge):
        storage.complete_multipart(upload_id, [(2, etags[2]), (1, etags[1])], key="b/00000000/k_j.bin",
                                   file_name="j.bin", content_type=None, max_bytes=5)
    # Over the limit the staged parts are dropped: start again.
    for n, body in [(2, b"SECOND"), (1, b"first-")]:
        src = tmp_path / f"part{n}"
        src.write_bytes(body)
        etags[n] = storage.put_part(upload_id, n, src)
    stored = storage.complete_multipart(upload_id, [(2, etags[2]), (1, etags[1])], key="b/00000000/k_j.bin",
                                        file_name="j.bin", content_type="application/x-thing")
    assert storage.read_bytes(stored.key) == b"first-SECOND"
    assert stored.content_type == "application/x-thing"
    assert _objects(moto, bucket) == ["media/v1/b/00000000/k_j.bin"]


def test_sweep_drops_old_staged_parts(moto, bucket, tmp_path):
    storage = _open(moto, bucket, tmp_path)
    src = tmp_path / "p"
    src.write_bytes(b"abandoned")
    storage.put_part("1" * 32, 1, src)
    assert storage.sweep(older_than_s=3600) == 0
    assert storage.sweep(older_than_s=-5) == 1
    assert _objects(moto, bucket) == []


def test_routes_stream_with_range(moto, bucket, tmp_path):
    storage = _open(moto, bucket, tmp_path)
    app, key = build_app(tmp_path, storage)
    with serve(app, key) as served, httpx.Client(base_url=served.url, headers=served.auth) as client:
        body = bytes(range(256)) * 8
        out = client.post("/files/upload", content=body,
                          headers={"Content-Type": "video/mp4", "X-Fal-File-Name": "s3.mp4"}).json()
        assert out["access_url"].startswith(f"{served.url}/files/b/")
        got = httpx.get(out["access_url"])
        assert got.status_code == 200 and got.content == body and got.headers["content-type"] == "video/mp4"
        part = httpx.get(out["access_url"], headers={"Range": "bytes=100-"})
        assert part.status_code == 206 and part.content == body[100:]
        assert part.headers["content-range"] == f"bytes 100-{len(body) - 1}/{len(body)}"
        tail = httpx.get(out["access_url"], headers={"Range": "bytes=-16"})
        assert tail.status_code == 206 and tail.content == body[-16:]
        assert httpx.get(out["access_url"], headers={"Range": "bytes=5000-"}).status_code == 416
        head = httpx.head(out["access_url"])
        assert head.headers["content-length"] == str(len(body)) and head.content == b""

        # The JS client's signed multipart, joined in the bucket.
        init = client.post("/storage/upload/initiate-multipart",
                           json={"content_type": "application/octet-stream", "file_name": "j.bin"}).json()
        base, _, query = init["upload_url"].partition("?")
        parts = [httpx.put(f"{base}/{n}?{query}", content=bytes([n]) * 1000).json() for n in (1, 2)]
        assert httpx.post(f"{base}/complete?{query}", json={"parts": parts}).status_code == 200
        assert httpx.get(init["file_url"]).content == b"\x01" * 1000 + b"\x02" * 1000


def test_presigned_redirect(moto, bucket, tmp_path):
    storage = _open(moto, bucket, tmp_path, presign="true")
    stored = storage.put_bytes(b"signed", file_name="p.txt", content_type="text/plain")
    app, key = build_app(tmp_path, storage)
    with serve(app, key) as served:
        first = httpx.get(f"{served.url}/files/{stored.key}")
        assert first.status_code == 307 and first.headers["location"].startswith(f"{moto}/{bucket}/media/v1/")
        assert "X-Amz-Signature=" in first.headers["location"]
        assert httpx.get(f"{served.url}/files/{stored.key}", follow_redirects=True).content == b"signed"


def test_public_url_option(moto, bucket, tmp_path):
    storage = _open(moto, bucket, tmp_path, public_url="https://cdn.example.com/v1")
    stored = storage.put_bytes(b"pub", file_name="c.png", content_type="image/png")
    url = storage.url(stored.key, "http://api.local")
    assert url == f"https://cdn.example.com/v1/{stored.key}"
    assert storage.key_from_url(url) == stored.key
    assert storage.key_from_url(f"http://api.local/files/{stored.key}") == stored.key
    assert storage.redirect_url(stored.key) == url


def test_bad_storage_urls(tmp_path):
    with pytest.raises(ValueError, match="unknown S3 storage option"):
        open_storage(Settings(data_dir=tmp_path, storage_url="s3://b/p?endpoint=http://x&colour=blue"))
    with pytest.raises(ValueError, match="not an S3 storage URL"):
        S3Storage.from_url("s3:///nobucket", staging_dir=tmp_path)
