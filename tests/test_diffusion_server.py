"""End to end: ``stillreel serve --engine diffusion`` on tiny checkpoints, real HTTP on loopback.

Two servers: one started with ``--model FOLDER`` (every endpoint on the tiny LTX-2, text-to-video
ids included), one with ``--config FILE`` binding endpoints to different tiny models (a text-only
Wan T2V among them). Requests go through fal's queue API;
videos are downloaded and decoded with PyAV. The tiny folders carry their own stillreel.toml
(2 steps, a 64×32 bucket), so the command lines are exactly what a user types.
"""

from __future__ import annotations

import re

import httpx
import pytest
import tiny_pipelines as tiny
from apihelp import IMAGE, O3, V1, V2, data_uri, png_bytes, wait
from live_server import LiveServer
from videocheck import probe

V1_PRO = "fal-ai/kling-video/v1/pro/image-to-video"
V25 = "fal-ai/kling-video/v2.5-turbo/standard/image-to-video"
V26T = "fal-ai/kling-video/v2.6/pro/text-to-video"  # generate_audio defaults to true
O3T = "fal-ai/kling-video/o3/standard/text-to-video"
V16T = "fal-ai/kling-video/v1.6/pro/text-to-video"
O1R = "fal-ai/kling-video/o1/reference-to-video"
O3R = "fal-ai/kling-video/o3/standard/reference-to-video"
PORTRAIT_IMAGE = data_uri(png_bytes(64, 96, seed=4))
END_IMAGE = data_uri(png_bytes(96, 64, seed=5))
MASK = data_uri(png_bytes(96, 64, seed=6))
ENV = {"OMP_NUM_THREADS": "1"}  # tiny models: thread hand-offs cost more than they give
TIMEOUT = 240  # a guard against hangs on a loaded machine, not a performance figure


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict:
    return tiny.build_all(tmp_path_factory.getbasetemp() / "tiny-pipelines")


@pytest.fixture(scope="module")
def model_server(tiny_models, tmp_path_factory):
    args = ["--model", str(tiny_models[tiny.LTX2])]
    with LiveServer.start(tmp_path_factory.mktemp("diffusion-model"), auth=False, engine="diffusion",
                          args=args, env=ENV, ready_timeout=TIMEOUT) as srv:
        yield srv


@pytest.fixture(scope="module")
def config_server(tiny_models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("diffusion-config")
    config = folder / "stillreel.toml"
    config.write_text(
        f'[engine]\nname = "diffusion"\nmodel = "{tiny_models[tiny.WAN21_I2V]}"\n\n'
        f'[endpoints."{O3}"]\nname = "diffusion"\nmodel = "{tiny_models[tiny.LTX2]}"\n\n'
        # Many steps: a job long enough to cancel halfway through.
        f'[endpoints."{V25}"]\nname = "diffusion"\nmodel = "{tiny_models[tiny.WAN21_I2V]}"\nsteps = 1000\n\n'
        # A text-to-video id on a text-only model, and an image-to-video id on it (refused).
        f'[endpoints."{V26T}"]\nname = "diffusion"\nmodel = "{tiny_models[tiny.WAN21_T2V]}"\n\n'
        f'[endpoints."{V1_PRO}"]\nname = "diffusion"\nmodel = "{tiny_models[tiny.WAN21_T2V]}"\n\n'
        # Reference-to-video on Wan VACE.
        f'[endpoints."{O3R}"]\nname = "diffusion"\nmodel = "{tiny_models[tiny.WAN_VACE]}"\n'
    )
    args = ["--config", str(config), "--cancel-grace", "60"]
    with LiveServer.start(folder / "data", auth=False, engine=None, args=args, env=ENV,
                          ready_timeout=TIMEOUT) as srv:
        yield srv


def post(client: httpx.Client, endpoint: str, **fields) -> httpx.Response:
    return client.post(f"/queue/{endpoint}", json={"prompt": "a cat walks", "image_url": IMAGE, **fields})


def submit(client: httpx.Client, endpoint: str, **fields) -> dict:
    r = post(client, endpoint, **fields)
    assert r.status_code == 200, r.text
    return r.json()


def video_of(client: httpx.Client, submitted: dict, tmp_path) -> tuple[dict, dict]:
    """Wait for the request, download its MP4 and return (status with logs, container facts)."""
    status = wait(client, submitted, timeout=TIMEOUT, logs=True)
    assert status["error"] is None, status
    result = client.get(submitted["response_url"])
    assert result.status_code == 200, result.text
    video = result.json()["video"]
    assert video["content_type"] == "video/mp4"
    path = tmp_path / f"{submitted['request_id']}.mp4"
    path.write_bytes(httpx.get(video["url"], timeout=60).content)
    assert path.stat().st_size == video["file_size"]
    return status, probe(path)


def engine_line(status: dict) -> str:
    lines = [e["message"] for e in status["logs"] if re.match(r"^[\w.-]+: \d+ shot", e["message"])]
    assert len(lines) == 1, status["logs"]
    return lines[0]


# -- one model for every endpoint (--model) ---------------------------------------------------------


def test_model_flag_serves_every_seed_endpoint(model_server, tmp_path):
    cases = [  # endpoint, fields, (width, height), frames at LTX-2's 24 fps
        (V1, {"duration": "5", "aspect_ratio": "9:16", "tail_image_url": END_IMAGE}, (32, 64), 121),
        (V1_PRO, {"duration": "5", "aspect_ratio": "1:1"}, (32, 32), 121),
        (V2, {"duration": "10", "cfg_scale": 0.0}, (64, 32), 241),
        (V25, {"duration": "5", "image_url": PORTRAIT_IMAGE}, (32, 64), 121),  # follows the input
        (O3, {"prompt": None, "duration": "5", "generate_audio": True, "end_image_url": END_IMAGE,
              "multi_prompt": [{"prompt": "a cat", "duration": "2"}, {"prompt": "a dog", "duration": "3"}]},
         (64, 32), 121),  # 49 + 73 - the frame the second shot starts from
    ]
    with model_server.http() as client:
        submitted = [submit(client, endpoint, **fields) for endpoint, fields, _, _ in cases]
        for (endpoint, fields, size, frames), sub in zip(cases, submitted):
            status, facts = video_of(client, sub, tmp_path)
            assert (facts["width"], facts["height"], facts["frames"]) == (*size, frames), endpoint
            assert facts["fps"] == 24.0 and facts["codec"] == "h264"
            line = engine_line(status)
            assert line.startswith("ltx-2: ") and f"{frames} frames at {size[0]}x{size[1]}" in line
            if endpoint == V2:
                assert "guidance 1" in line  # cfg_scale 0: guidance off
            else:
                assert "guidance 3" in line  # the default 0.5: the model card's 3.0
            if endpoint == O3:
                assert facts["audio"]["codec"] == "aac"
                assert facts["audio"]["duration"] == pytest.approx(frames / 24, abs=0.06)
                assert "2 shot(s)" in line
            else:
                assert facts["audio"] is None
            steps = 2 * (2 if endpoint == O3 else 1)  # two steps per pipeline call, one call per shot
            assert [e["message"] for e in status["logs"] if e["message"].startswith("step ")] == [
                f"step {k}/{steps}" for k in range(1, steps + 1)
            ]


@pytest.mark.parametrize(
    "fields, field",
    [({"static_mask_url": MASK}, "static_mask_url"), ({"camera_control": "forward_up"}, "camera_control")],
)
def test_unsupported_fields_are_422_at_submit(model_server, fields, field):
    with model_server.http() as client:
        r = post(client, V1, **fields)
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert detail[0]["type"] == "feature_not_supported" and detail[0]["loc"] == ["body", field]
    assert "ltx-2" in detail[0]["msg"]  # names the model serving the endpoint


# -- endpoints bound to different models (--config) -------------------------------------------------


def test_config_binds_endpoints_to_their_models(config_server, tmp_path):
    with config_server.http() as client:
        o3 = submit(client, O3, duration="3", generate_audio=True, end_image_url=END_IMAGE)
        v2 = submit(client, V2, duration="5", negative_prompt="blurry")
        status, facts = video_of(client, o3, tmp_path)
        assert engine_line(status).startswith("ltx-2: ")
        assert (facts["width"], facts["height"], facts["frames"], facts["fps"]) == (64, 32, 73, 24.0)
        assert facts["audio"]["codec"] == "aac"
        status, facts = video_of(client, v2, tmp_path)
        assert engine_line(status).startswith("wan2.1-i2v: ")
        assert (facts["width"], facts["height"], facts["frames"], facts["fps"]) == (64, 32, 81, 16.0)
        assert facts["audio"] is None


def test_model_flag_serves_text_to_video_with_audio(model_server, tmp_path):
    with model_server.http() as client:
        r = client.post(f"/queue/{O3T}", json={"prompt": "a cat walks", "duration": "3", "aspect_ratio": "9:16",
                                               "generate_audio": True})
        assert r.status_code == 200, r.text
        status, facts = video_of(client, r.json(), tmp_path)
    assert (facts["width"], facts["height"], facts["frames"], facts["fps"]) == (32, 64, 73, 24.0)
    assert facts["audio"]["codec"] == "aac"
    assert engine_line(status).startswith("ltx-2: ")


def test_config_binds_a_text_to_video_id_to_a_text_model(config_server, tmp_path):
    with config_server.http() as client:
        r = client.post(f"/queue/{V26T}", json={"prompt": "a cat walks", "duration": "5"})
        assert r.status_code == 200, r.text
        submitted = r.json()
        status, facts = video_of(client, submitted, tmp_path)
        result = client.get(submitted["response_url"]).json()
    assert engine_line(status).startswith("wan2.1-t2v: ")
    # 16:9 is the endpoint's default aspect ratio: the tiny model's landscape bucket, 5 s at 16 fps.
    assert (facts["width"], facts["height"], facts["frames"], facts["fps"]) == (64, 32, 81, 16.0)
    # generate_audio defaults to true on v2.6; this model has no audio, so it ran without, and says so
    # in the logs and in the stored result (an extra key that fal clients ignore).
    assert facts["audio"] is None
    assert result["stillreel"] == {"dropped_defaults": ["generate_audio"]}
    assert any(e["level"] == "WARN" and e["message"].startswith("generate_audio:") and "without it" in e["message"]
               for e in status["logs"])


def test_config_t2v_refusals_at_submit(config_server):
    with config_server.http() as client:
        # Asked for explicitly, audio is refused rather than dropped.
        r = client.post(f"/queue/{V26T}", json={"prompt": "a cat", "generate_audio": True})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "generate_audio"]
        # An image-to-video id bound to the text-only model.
        r = post(client, V1_PRO)
        assert r.status_code == 422
        item = r.json()["detail"][0]
        assert item["type"] == "feature_not_supported" and item["loc"] == ["body", "image_url"]
        assert item["ctx"]["feature"] == "image_to_video" and "wan2.1-t2v" in item["msg"]
        # A text-to-video id on the default binding, an image-to-video model.
        r = client.post(f"/queue/{V16T}", json={"prompt": "a cat"})
        assert r.status_code == 422 and r.json()["detail"][0]["ctx"]["feature"] == "text_to_video"
        # Reference images on the default binding (Wan2.1 I2V): refused.
        r = client.post(f"/queue/{O1R}", json={"prompt": "@Image1 walks", "image_urls": [IMAGE]})
        assert r.status_code == 422
        assert "reference_images" in [d["ctx"]["feature"] for d in r.json()["detail"]]


def test_config_binds_reference_to_video_to_vace(config_server, tmp_path):
    element = {"frontal_image_url": END_IMAGE, "reference_image_urls": [MASK]}
    with config_server.http() as client:
        r = client.post(f"/queue/{O3R}", json={"prompt": "@Element1 meets @Image1", "duration": "3",
                                               "aspect_ratio": "1:1", "image_urls": [IMAGE], "elements": [element]})
        assert r.status_code == 200, r.text
        status, facts = video_of(client, r.json(), tmp_path)
    assert engine_line(status).startswith("wan-vace: ")
    assert (facts["width"], facts["height"], facts["frames"], facts["fps"]) == (48, 48, 49, 16.0)


def test_config_refusals_follow_each_endpoints_model(config_server):
    with config_server.http() as client:
        # The default binding (Wan2.1 I2V) has no end frame; O3's (LTX-2) has audio and end frames.
        r = post(client, V1, tail_image_url=END_IMAGE)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "tail_image_url"]
        assert "wan2.1-i2v" in r.json()["detail"][0]["msg"]
        assert post(client, O3, generate_audio=True, end_image_url=END_IMAGE).status_code == 200


def test_cancel_stops_the_generation_at_its_next_step(config_server):
    with config_server.http() as client:
        sub = submit(client, V25, duration="5")

        def reached_step(status: dict) -> int:
            steps = [int(m.group(1)) for e in status.get("logs") or []
                     if (m := re.match(r"step (\d+)/1000$", e["message"]))]
            return max(steps, default=0)

        status = wait(client, sub, until=("IN_PROGRESS",), timeout=TIMEOUT, logs=True)
        while reached_step(status) < 3 and status["status"] != "COMPLETED":
            status = client.get(sub["status_url"], params={"logs": "1"}).json()
        r = client.put(sub["cancel_url"])
        assert r.status_code == 202, r.text
        status = wait(client, sub, timeout=TIMEOUT, logs=True)
        assert status["error_type"] == "request_cancelled"
        assert 3 <= reached_step(status) < 1000
        # It stopped by itself at a step boundary; the worker did not have to kill it.
        assert not any("killed" in e["message"] for e in status["logs"])
        assert client.get(sub["response_url"]).status_code == 400
        # The worker goes on serving.
        after = submit(client, V2, duration="5")
        assert wait(client, after, timeout=TIMEOUT)["error"] is None

