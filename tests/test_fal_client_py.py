"""The real, unmodified ``fal_client`` (PyPI, pinned in pyproject) against a live ``stillreel serve``.

The only change an app makes is ``stillreel.compat.use_stillreel(url, key=...)``; everything
below then calls fal_client exactly as its documentation shows. One worker and the CPU motion
engine: requests really queue, really run, and really produce H.264 MP4s that are decoded here.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import time

import fal_client
import httpx
import pytest
from kindcheck import check_kind_video, picture_png, rgb_of
from live_server import LiveServer, WebhookReceiver, png_bytes, verify_fal_webhook, video_facts
from PIL import Image

from stillreel.compat import use_stillreel

V2 = "fal-ai/kling-video/v2/master/image-to-video"
O3 = "fal-ai/kling-video/o3/standard/image-to-video"
V1 = "fal-ai/kling-video/v1/standard/image-to-video"
# One id of each kind, for the end-to-end checks at the bottom.
T2V = "fal-ai/kling-video/v3/standard/text-to-video"
I2V_ELEMENTS = "fal-ai/kling-video/v3/standard/image-to-video"
R2V = "fal-ai/kling-video/o1/standard/reference-to-video"
ELEMENTS = "fal-ai/kling-video/v1.6/standard/elements"
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with LiveServer.start(tmp_path_factory.mktemp("fal-py"), auth=True,
                          args=["--workers", "1", "--allow-private-urls"]) as srv:  # loopback webhook receivers
        yield srv


@pytest.fixture(scope="module", autouse=True)
def switched(server):
    switch = use_stillreel(server.url, key=server.key)
    yield switch
    switch.restore()


@pytest.fixture()
def image_path(tmp_path):
    path = tmp_path / "start.png"
    path.write_bytes(png_bytes(320, 240, seed=1))
    return path


def check_video(server: LiveServer, output: dict, tmp_path, name: str = "out.mp4") -> dict:
    """The output is fal's ``{"video": File}`` and its URL serves a decodable H.264 MP4."""
    video = output["video"]
    assert video["url"].startswith(server.url + "/"), video
    assert video["content_type"] == "video/mp4"
    response = httpx.get(video["url"], timeout=60)
    assert response.status_code == 200
    assert len(response.content) == video["file_size"]
    path = tmp_path / name
    path.write_bytes(response.content)
    facts = video_facts(path)
    assert facts["codec"] == "h264" and facts["frames"] > 0, facts
    return facts


def sha256_of_url(url: str) -> str:
    digest = hashlib.sha256()
    with httpx.stream("GET", url, timeout=120) as response:
        assert response.status_code == 200
        for chunk in response.iter_bytes(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def big_file(path, size: int = 101 * MiB):
    """A > 100 MiB file (fal_client's multipart threshold) with content worth checking."""
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        block = os.urandom(MiB)
        for i in range(size // MiB):
            chunk = bytes([i % 256]) + block[1:]
            digest.update(chunk)
            f.write(chunk)
    return digest.hexdigest()


def wait_until(predicate, timeout: float = 60.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("condition not reached")


def completed_or_none(status):
    return status if isinstance(status, fal_client.Completed) else None


# --- sync ------------------------------------------------------------------------------------


def test_use_stillreel_points_the_unmodified_module_at_the_server(server, switched):
    from fal_client import client as fal_module

    assert fal_module.RUN_URL_FORMAT == server.url + "/"
    assert fal_module.QUEUE_URL_FORMAT == server.url + "/queue/"
    assert fal_module.REST_URL == fal_module.CDN_URL == server.url
    assert os.environ["FAL_KEY"] == server.key
    # The default client answers from our server: an unknown request id is our 404.
    with pytest.raises(fal_client.FalClientHTTPError) as err:
        fal_client.status(V2, "00000000-0000-0000-0000-000000000000")
    assert err.value.status_code == 404


def test_use_stillreel_also_switches_clients_that_were_already_used(server, switched, image_path):
    switched.restore()  # back on fal's hosts, as in an app that used fal_client before switching
    os.environ["FAL_KEY"] = "the-apps-fal-key"  # (use_stillreel below replaces it again)
    own = fal_client.SyncClient(key="the-apps-fal-key")
    try:
        assert fal_client.sync_client._token_manager._url.startswith("https://rest.fal.ai/")  # cached now
        assert own._token_manager._url.startswith("https://rest.fal.ai/")
    finally:
        use_stillreel(server.url, key=server.key, clients=[own])
    assert own.key == server.key  # clients= are re-keyed too
    # Uploads would go to rest.fal.ai (unreachable here) if the cached token managers had survived.
    assert fal_client.upload_file(image_path).startswith(server.url + "/")
    assert own.upload_file(image_path).startswith(server.url + "/")


def test_validation_error_is_a_fal_client_http_error_with_detail(image_path):
    data_uri = fal_client.encode_file(image_path)
    with pytest.raises(fal_client.FalClientHTTPError) as err:
        fal_client.run(V2, arguments={"image_url": data_uri, "duration": "5"})  # no prompt
    assert err.value.status_code == 422
    detail = err.value.message
    assert isinstance(detail, list) and detail
    assert detail[0]["loc"] == ["body", "prompt"] and detail[0]["type"] == "missing"

    with pytest.raises(fal_client.FalClientHTTPError) as err:
        fal_client.submit(V2, arguments={"prompt": "x", "image_url": data_uri, "duration": "7"})
    assert err.value.status_code == 422
    assert err.value.message[0]["loc"] == ["body", "duration"]


def test_submit_with_webhook_status_result_and_subscribe_with_queue_updates(server, image_path, tmp_path):
    data_uri = fal_client.encode_file(image_path)
    assert data_uri.startswith("data:image/png;base64,")
    with WebhookReceiver() as hooks:
        # A: submitted first, so that B (subscribe) really waits in the queue behind it.
        handle = fal_client.submit(
            V2, arguments={"prompt": "a slow zoom", "image_url": data_uri, "duration": "5"},
            webhook_url=hooks.url,
        )
        assert isinstance(handle, fal_client.SyncRequestHandle) and handle.request_id

        updates = []
        output_b = fal_client.subscribe(
            O3,
            arguments={"prompt": "the sun rises", "image_url": data_uri, "duration": "3"},
            with_logs=True,
            on_queue_update=updates.append,
        )
        queued = [u for u in updates if isinstance(u, fal_client.Queued)]
        running = [u for u in updates if isinstance(u, fal_client.InProgress)]
        assert queued and all(isinstance(u.position, int) and u.position >= 0 for u in queued)
        assert any(u.logs for u in running), "IN_PROGRESS updates should carry log lines"
        first_running = updates.index(running[0])
        assert all(isinstance(u, fal_client.Queued) for u in updates[:first_running])
        check_video(server, output_b, tmp_path, "b.mp4")

        # A by handle, then by id through the module-level functions (URLs rebuilt by fal_client).
        status = handle.status(with_logs=True)
        assert isinstance(status, fal_client.Completed)  # B ran after A, so A is done
        assert status.error is None and status.logs is not None
        output_a = handle.get()
        assert fal_client.result(V2, handle.request_id) == output_a
        again = fal_client.status(V2, handle.request_id, with_logs=False)
        assert isinstance(again, fal_client.Completed)
        facts = check_video(server, output_a, tmp_path, "a.mp4")
        assert facts["duration"] and abs(facts["duration"] - 5) < 0.6, facts  # a 5 s clip

        # The webhook for A: fal's body, signed with a key from our JWKS.
        call = hooks.wait_for(lambda c: json.loads(c["body"]).get("request_id") == handle.request_id)
        body = json.loads(call["body"])
        assert body["status"] == "OK" and body["payload"] == output_a
        assert body["gateway_request_id"] == handle.request_id
        jwks = httpx.get(f"{server.url}/.well-known/jwks.json", timeout=10).json()
        assert verify_fal_webhook(call["headers"], call["body"], jwks)
        assert not verify_fal_webhook(call["headers"], call["body"] + b" ", jwks)


def test_run_with_an_uploaded_image(server, tmp_path):
    picture = Image.open(io.BytesIO(png_bytes(320, 240, seed=2)))
    url = fal_client.upload_image(picture, format="png")
    assert url.startswith(server.url + "/")
    fetched = Image.open(io.BytesIO(httpx.get(url, timeout=30).content))
    assert fetched.size == (320, 240)

    output = fal_client.run(O3, arguments={"prompt": "leaves sway", "image_url": url, "duration": "3"})
    check_video(server, output, tmp_path)


def test_upload_file_and_bytes_single_part_round_trip(image_path):
    url = fal_client.upload_file(image_path)
    assert httpx.get(url, timeout=30).content == image_path.read_bytes()
    url = fal_client.upload(b"hello stillreel", "text/plain")
    response = httpx.get(url, timeout=30)
    assert response.content == b"hello stillreel"
    assert response.headers["content-type"].startswith("text/plain")


def test_upload_file_over_100_mib_goes_multipart(tmp_path):
    path = tmp_path / "big.bin"
    digest = big_file(path)
    url = fal_client.upload_file(path)
    assert sha256_of_url(url) == digest


def test_cancel_queued_and_running_requests(image_path):
    data_uri = fal_client.encode_file(image_path)
    running = fal_client.submit(V1, arguments={"prompt": "long one", "image_url": data_uri, "duration": "10"})
    queued = fal_client.submit(V1, arguments={"prompt": "never runs", "image_url": data_uri, "duration": "10"})

    assert isinstance(queued.status(), fal_client.Queued)
    queued.cancel()
    wait_until(lambda: isinstance(running.status(), fal_client.InProgress))
    fal_client.cancel(V1, running.request_id)  # by id, through the module-level function

    for handle in (queued, running):
        final = wait_until(lambda h=handle: completed_or_none(h.status()))
        assert final.error_type == "request_cancelled", final
        with pytest.raises(fal_client.FalClientHTTPError) as err:
            handle.get()
        assert err.value.status_code >= 400
    # Cancelling a finished request is refused (fal: 400 ALREADY_COMPLETED), and says so.
    with pytest.raises(fal_client.FalClientHTTPError) as err:
        queued.cancel()
    assert err.value.status_code == 400


# --- async -----------------------------------------------------------------------------------


def test_async_submit_status_result_and_subscribe(server, tmp_path):
    hooks = WebhookReceiver()

    async def flow():
        client = fal_client.AsyncClient()  # key from FAL_KEY, set by use_stillreel
        image = Image.open(io.BytesIO(png_bytes(256, 256, seed=3)))
        data_uri = fal_client.encode_image(image, format="png")
        first = await fal_client.submit_async(O3, arguments={"prompt": "A", "image_url": data_uri, "duration": "3"},
                                              webhook_url=hooks.url)
        assert isinstance(first, fal_client.AsyncRequestHandle)
        updates = []
        output = await client.subscribe(
            O3, arguments={"prompt": "B", "image_url": data_uri, "duration": "3"},
            with_logs=True, on_queue_update=updates.append,
        )
        status = await first.status(with_logs=True)
        by_id = await fal_client.result_async(O3, first.request_id)
        by_handle = await first.get()
        return updates, output, status, by_id, by_handle

    with hooks:
        updates, output, status, by_id, by_handle = asyncio.run(flow())
        call = hooks.wait_for(lambda c: True)
    body = json.loads(call["body"])
    assert body["status"] == "OK" and body["payload"] == by_id
    jwks = httpx.get(f"{server.url}/.well-known/jwks.json", timeout=10).json()
    assert verify_fal_webhook(call["headers"], call["body"], jwks)
    assert any(isinstance(u, fal_client.Queued) and u.position >= 0 for u in updates)
    assert any(isinstance(u, fal_client.InProgress) and u.logs for u in updates)
    assert isinstance(status, fal_client.Completed) and status.error is None
    assert by_id == by_handle
    check_video(server, output, tmp_path, "b.mp4")
    check_video(server, by_id, tmp_path, "a.mp4")


def test_async_run_with_upload_file_and_upload_image(server, image_path, tmp_path):
    async def flow():
        client = fal_client.AsyncClient()
        url = await client.upload_file(image_path)
        small = await client.upload_image(Image.open(image_path), format="jpeg")
        output = await client.run(V2, arguments={"prompt": "clouds", "image_url": url, "duration": "5"})
        return url, small, output

    url, small, output = asyncio.run(flow())
    assert httpx.get(url, timeout=30).content == image_path.read_bytes()
    assert httpx.get(small, timeout=30).content[:2] == b"\xff\xd8"  # a JPEG
    check_video(server, output, tmp_path)


def test_async_upload_file_over_100_mib_goes_multipart(tmp_path):
    path = tmp_path / "big.bin"
    digest = big_file(path)
    url = asyncio.run(fal_client.AsyncClient().upload_file(path))
    assert sha256_of_url(url) == digest


def test_async_cancel_queued_and_running_requests(image_path):
    async def flow():
        client = fal_client.AsyncClient()
        data_uri = fal_client.encode_file(image_path)
        args = {"prompt": "p", "image_url": data_uri, "duration": "10"}
        running = await client.submit(V1, arguments=args)
        queued = await client.submit(V1, arguments=args)
        assert isinstance(await queued.status(), fal_client.Queued)
        await client.cancel(V1, queued.request_id)
        while not isinstance(await running.status(), fal_client.InProgress):
            await asyncio.sleep(0.05)
        await running.cancel()
        finals = []
        for handle in (queued, running):
            while not isinstance(status := await handle.status(), fal_client.Completed):
                await asyncio.sleep(0.05)
            finals.append(status)
            with pytest.raises(fal_client.FalClientHTTPError):
                await handle.get()
        return finals

    for final in asyncio.run(flow()):
        assert final.error_type == "request_cancelled"


def test_async_validation_error(image_path):
    async def flow():
        return await fal_client.AsyncClient().submit(O3, arguments={"prompt": "x", "duration": "3"})

    with pytest.raises(fal_client.FalClientHTTPError) as err:
        asyncio.run(flow())
    assert err.value.status_code == 422
    assert err.value.message[0]["loc"] == ["body", "image_url"]


# --- every kind: text-, image-, reference-to-video and elements, decoded and checked ----------


@pytest.fixture(scope="module")
def pictures():
    """Distinct textured pictures (PNG bytes) by name; "unrelated" is never sent (the control)."""
    return {name: picture_png(seed) for name, seed in
            [("a", 51), ("b", 52), ("frontal", 53), ("view", 54), ("unrelated", 55)]}


def downloaded(server: LiveServer, output: dict, tmp_path, name: str):
    check_video(server, output, tmp_path, name)
    return tmp_path / name


@pytest.mark.parametrize("audio", [None, False], ids=["audio-default-on", "audio-off"])
def test_text_to_video_through_fal_client(server, tmp_path, audio):
    arguments = {"prompt": "a harbour at night, the camera pans left", "duration": "3", "aspect_ratio": "9:16"}
    if audio is not None:
        arguments["generate_audio"] = audio
    updates = []
    output = fal_client.subscribe(T2V, arguments=arguments, with_logs=True, on_queue_update=updates.append)
    # v3's generate_audio defaults to true: an AAC track exactly when it is on.
    path = downloaded(server, output, tmp_path, "t2v.mp4")
    check_kind_video(path, aspect="9:16", seconds=3, audio=audio is None)
    logs = [log["message"] for u in updates if isinstance(u, fal_client.InProgress) for log in (u.logs or [])]
    assert any("procedural" in m for m in logs), logs


def test_image_to_video_with_an_element_through_fal_client(server, tmp_path, pictures):
    start = picture_png(56, 640, 360)
    output = fal_client.subscribe(I2V_ELEMENTS, arguments={
        "prompt": "@Element1 walks in", "duration": "3", "start_image_url": fal_client.upload(start, "image/png"),
        "elements": [{"frontal_image_url": fal_client.upload(pictures["frontal"], "image/png"),
                      "reference_image_urls": [fal_client.upload(pictures["view"], "image/png")]}],
    })
    path = downloaded(server, output, tmp_path, "i2v.mp4")
    check_kind_video(path, aspect="16:9", seconds=3, audio=True, starts_on=rgb_of(start),
                     shows=[rgb_of(pictures["frontal"]), rgb_of(pictures["view"])],
                     unrelated=rgb_of(pictures["unrelated"]))


def test_reference_to_video_through_fal_client(server, tmp_path, pictures):
    url = {name: fal_client.upload(data, "image/png") for name, data in pictures.items() if name != "unrelated"}
    output = fal_client.run(R2V, arguments={
        "prompt": "@Image2 and @Element1 by the sea", "duration": "3", "aspect_ratio": "1:1",
        "image_urls": [url["a"], url["b"]],
        "elements": [{"frontal_image_url": url["frontal"], "reference_image_urls": [url["view"]]}],
    })
    path = downloaded(server, output, tmp_path, "r2v.mp4")
    check_kind_video(path, aspect="1:1", seconds=3, audio=False,
                     shows=[rgb_of(pictures[n]) for n in ("a", "b", "frontal", "view")],
                     starts_on=rgb_of(pictures["b"]),  # no start image: the first picture the prompt names
                     unrelated=rgb_of(pictures["unrelated"]))


def test_elements_through_fal_client(server, tmp_path, pictures):
    output = fal_client.subscribe(ELEMENTS, arguments={
        "prompt": "two friends meet", "aspect_ratio": "9:16",
        "input_image_urls": [fal_client.encode(pictures["a"], "image/png"), fal_client.encode(pictures["b"], "image/png")],
    })
    path = downloaded(server, output, tmp_path, "elements.mp4")
    check_kind_video(path, aspect="9:16", seconds=5, audio=False,
                     shows=[rgb_of(pictures["a"]), rgb_of(pictures["b"])], starts_on=rgb_of(pictures["a"]),
                     unrelated=rgb_of(pictures["unrelated"]))
