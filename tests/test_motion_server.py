"""Issue #2's "done means": each of the five endpoints, through a live server with the default motion
engine, answers with a playable MP4 of the right size, frame count and container layout."""

from __future__ import annotations

import io

import av
import httpx
import pytest
from apihelp import data_uri, wait
from live_server import LiveServer
import numpy as np
from PIL import Image


def photo(width: int, height: int) -> str:
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([(x * 255 // width), (y * 255 // height), ((x // 16 + y // 16) % 2) * 200], axis=-1)
    buf = io.BytesIO()
    Image.fromarray(rgb.astype(np.uint8)).save(buf, "JPEG", quality=90)
    return data_uri(buf.getvalue(), "image/jpeg")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with LiveServer.start(tmp_path_factory.mktemp("motion"), engine="motion") as srv:
        yield srv


CASES = [
    ("fal-ai/kling-video/v1/standard/image-to-video",
     {"prompt": "camera preset", "camera_control": "forward_up", "cfg_scale": 0.8}, (640, 480), (1280, 720), 120),
    ("fal-ai/kling-video/v1/pro/image-to-video", {"prompt": "pan left", "aspect_ratio": "9:16"}, (640, 480), (720, 1280), 120),
    ("fal-ai/kling-video/v2/master/image-to-video", {"prompt": "a calm sea"}, (480, 640), (720, 1280), 120),
    ("fal-ai/kling-video/v2.5-turbo/standard/image-to-video", {"prompt": "zoom out"}, (500, 480), (960, 960), 120),
    ("fal-ai/kling-video/o3/standard/image-to-video",
     {"duration": "3", "multi_prompt": [{"prompt": "zoom in", "duration": "2"}, {"prompt": "pan right", "duration": "1"}]},
     (640, 480), (1280, 720), 72),
]


def completed_video(server, endpoint: str, body: dict) -> tuple[bytes, list[str]]:
    """Submit, wait for success; the video's bytes and the log lines."""
    with server.http() as c:
        r = c.post(f"/queue/{endpoint}", json=body)
        assert r.status_code == 200, r.text
        sub = r.json()
        status = wait(c, sub, timeout=240, logs=True)
        assert status["error"] is None, status
        video = c.get(sub["response_url"]).json()["video"]
    return httpx.get(video["url"]).content, [m["message"] for m in status["logs"]]


@pytest.mark.parametrize("endpoint,fields,input_size,size,frames", CASES, ids=[c[0].split("/")[2] + "-" + c[0].split("/")[3] for c in CASES])
def test_each_endpoint_returns_a_playable_mp4(server, endpoint, fields, input_size, size, frames):
    data, logs = completed_video(server, endpoint, {"image_url": photo(*input_size), **fields})
    assert any("motion engine" in line for line in logs)
    assert data[4:8] == b"ftyp" and data.find(b"moov") < data.find(b"mdat")  # plays before it has downloaded
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.codec_context.width, stream.codec_context.height) == size
        assert stream.average_rate == 24
        assert sum(1 for _ in container.decode(video=0)) == frames


def test_audio_gives_an_aac_track_on_the_motion_engine(server):
    # v0.1 refused generate_audio with 422 feature_not_supported; the motion engine now makes a
    # procedural ambience of the clip's exact length.
    data, _ = completed_video(server, "fal-ai/kling-video/o3/standard/image-to-video",
                              {"image_url": photo(64, 64), "prompt": "x", "duration": "3", "generate_audio": True})
    with av.open(io.BytesIO(data)) as container:
        audio = container.streams.audio[0]
        assert audio.codec_context.name == "aac"
        assert abs(float(audio.duration * audio.time_base) - 3.0) < 0.03


def test_advanced_camera_control_gives_a_video_on_the_motion_engine(server):
    # It was refused with 422 feature_not_supported; fal accepts it, so the twin renders it.
    data, logs = completed_video(server, "fal-ai/kling-video/v1/standard/text-to-video", {
        "prompt": "a harbour at dawn", "advanced_camera_control": {"movement_type": "tilt", "movement_value": 4}})
    assert any("camera: advanced tilt +4" in line for line in logs), logs
    assert data[4:8] == b"ftyp"


def test_an_element_given_as_a_video_gives_a_video_on_the_motion_engine(server, tmp_path):
    # It was refused with 422 feature_not_supported (element_video); fal accepts it.
    from videocheck import encode_frames, fractal_image

    clip = encode_frames([fractal_image(160, 120, k) for k in range(4)], tmp_path / "element.mp4")
    data, logs = completed_video(server, "fal-ai/kling-video/o3/standard/reference-to-video", {
        "prompt": "@Element1 walks", "duration": "3", "elements": [{"video_url": data_uri(clip.read_bytes(), "video/mp4")}]})
    assert any("its video's first frame" in line for line in logs), logs
    assert data[4:8] == b"ftyp"


def _png(width: int, height: int) -> str:
    buf = io.BytesIO()
    Image.fromarray(np.full((height, width), 255, np.uint8)).save(buf, "PNG")
    return data_uri(buf.getvalue())


AFTER_THE_CLAIM = [
    # An undecodable image behind a URL: fetched and refused by the worker, under v1's own name.
    ("fal-ai/kling-video/v1/standard/image-to-video",
     {"tail_image_url": data_uri(b"\x89PNG\r\n\x1a\n not really a png")}, ["body", "tail_image_url"], "image_load_error"),
    # A mask whose shape does not fit the start image: found only once both are decoded.
    ("fal-ai/kling-video/v1/standard/image-to-video",
     {"dynamic_masks": [{"mask_url": _png(100, 300), "trajectories": [{"x": 10, "y": 10}, {"x": 50, "y": 40}]}]},
     ["body", "dynamic_masks", 0, "mask_url"], "value_error"),
    # A trajectory point off the image: its bounds need the image's size (endpoints.rules).
    ("fal-ai/kling-video/v1.5/pro/image-to-video",
     {"dynamic_masks": [{"mask_url": _png(64, 48), "trajectories": [{"x": 10, "y": 10}, {"x": 900, "y": 40}]}]},
     ["body", "dynamic_masks", 0, "trajectories", 1], "value_error"),
]


@pytest.mark.parametrize("endpoint,fields,loc,error_type", AFTER_THE_CLAIM,
                         ids=["undecodable-tail-image", "mask-does-not-fit", "trajectory-off-the-image"])
def test_a_failure_after_the_claim_reports_fals_loc_through_the_result(server, endpoint, fields, loc, error_type):
    # Valid at submit (200); the worker finds the fault, and the result answers fal's 422 body,
    # located by this endpoint's own field names.
    with server.http() as c:
        r = c.post(f"/queue/{endpoint}", json={"prompt": "x", "image_url": photo(640, 480), **fields})
        assert r.status_code == 200, r.text
        sub = r.json()
        status = wait(c, sub, timeout=120)
        assert status["error"] and status["error_type"] == error_type, status
        result = c.get(sub["response_url"])
    assert result.status_code == 422, result.text
    detail = result.json()["detail"]
    assert detail[0]["loc"] == loc and detail[0]["type"] == error_type, detail
