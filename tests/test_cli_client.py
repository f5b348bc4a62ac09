"""``stillreel run | status | result | cancel`` as a person or a script uses them: real subprocesses,
a live server (or none, for in-process rendering), real MP4s decoded, exit codes checked."""

from __future__ import annotations

import base64
import json
import re
import signal
import subprocess
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner
from live_server import CLI_COMMAND, REPO, LiveServer, cli, free_port, merged_env, png_bytes, video_facts
from PIL import Image

from stillreel.cli import app
from stillreel.cli_output import Exit
from stillreel.cli_flags import UsageError, build_input
from stillreel.client import Client

V1 = "fal-ai/kling-video/v1/standard/image-to-video"
V2 = "fal-ai/kling-video/v2/master/image-to-video"
O3 = "fal-ai/kling-video/o3/standard/image-to-video"
NO_SERVER = {"STILLREEL_URL": None, "STILLREEL_KEY": None}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with LiveServer.start(tmp_path_factory.mktemp("cli"), auth=True, args=["--workers", "1"]) as srv:
        yield srv


@pytest.fixture()
def image(tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(png_bytes(320, 240, seed=5))
    return path


@pytest.fixture()
def mask(tmp_path):
    pixels = np.zeros((240, 320), dtype=np.uint8)
    pixels[60:120, 80:160] = 255  # the yellow disc's box
    path = tmp_path / "mask.png"
    Image.fromarray(pixels).save(path)
    return path


def remote(server: LiveServer) -> dict:
    return {"STILLREEL_URL": server.url, "STILLREEL_KEY": server.key}


def sr(*args, env=None, real=False, timeout=120):
    """Run the CLI: in this process through typer's runner (fast; same app, same exit codes), or with
    ``real=True`` as a ``stillreel`` subprocess. Returns an object with returncode, stdout, stderr."""
    args = [str(a) for a in args]
    if real:
        return cli(*args, env=env, timeout=timeout, check=False)
    outcome = CliRunner().invoke(app, args, env=env)
    if outcome.exception is not None and not isinstance(outcome.exception, SystemExit):
        raise outcome.exception
    return SimpleNamespace(returncode=outcome.exit_code, stdout=outcome.stdout, stderr=outcome.stderr)


def assert_video(path, seconds) -> dict:
    facts = video_facts(path)
    assert facts["codec"] == "h264" and facts["frames"] > 0
    assert abs(facts["duration"] - seconds) < 0.6, facts
    return facts


# --- flags → fal's input (no server needed) ------------------------------------------------------


def flags(**overrides) -> dict:
    base = dict(prompt=None, tail_image=None, duration=None, aspect_ratio=None, camera=None, static_mask=None,
                dynamic_mask=[], trajectory=[], shot=[], negative_prompt=None, cfg_scale=None, audio=None)
    return {**base, **overrides}


def test_flags_map_to_each_endpoints_own_field_names(image, mask):
    data = build_input(V1, image=str(image), inline=True, **flags(
        prompt="p", tail_image="https://example.com/end.png", camera="forward_up", static_mask=str(mask),
        dynamic_mask=[str(mask)], trajectory=["10,20 30,40 50,60"], duration="10", cfg_scale=0.3))
    assert data["image_url"].startswith("data:image/png;base64,")
    assert base64.b64decode(data["image_url"].split(",", 1)[1]) == image.read_bytes()
    assert data["tail_image_url"] == "https://example.com/end.png"
    assert data["camera_control"] == "forward_up" and data["duration"] == "10" and data["cfg_scale"] == 0.3
    assert data["dynamic_masks"][0]["trajectories"] == [{"x": 10, "y": 20}, {"x": 30, "y": 40}, {"x": 50, "y": 60}]
    assert data["static_mask_url"].startswith("data:image/png;base64,")

    data = build_input(O3, image=str(image), inline=False, **flags(
        shot=["a cat wakes:2", "it yawns: 1"], tail_image=str(image), audio=False))
    assert data["image_url"] == image  # uploaded by the client when remote
    assert data["multi_prompt"] == [{"prompt": "a cat wakes", "duration": "2"}, {"prompt": "it yawns", "duration": "1"}]
    assert data["duration"] == "3" and data["end_image_url"] == image and data["generate_audio"] is False
    assert "prompt" not in data


@pytest.mark.parametrize("endpoint, bad", [
    (V2, dict(prompt="p", camera="down_back")),           # v2 master has no camera_control
    (V1, dict(prompt="p", dynamic_mask=["x.png"])),       # a mask without its trajectory
    (V1, dict(prompt="p", trajectory=["1,2 3"])),         # malformed points
    (O3, dict(prompt="p", shot=["a:2"])),                 # prompt and shots together
    (O3, dict(shot=["no seconds"])),
    (V2, dict()),                                         # no prompt
])
def test_bad_flags_are_usage_errors(image, endpoint, bad):
    with pytest.raises(UsageError):
        build_input(endpoint, image=str(image), inline=True, **flags(**bad))
    proc = sr("run", endpoint, "--image", image, *cli_flags(bad), env=NO_SERVER)
    assert proc.returncode == Exit.USAGE and "error:" in proc.stderr


def cli_flags(values: dict) -> list[str]:
    out = []
    for name, value in values.items():
        for item in value if isinstance(value, list) else [value]:
            out += [f"--{name.replace('_', '-')}", str(item)]
    return out


# --- in-process --------------------------------------------------------------------------------


def test_local_run_renders_in_process_without_a_server(image, mask, tmp_path):
    out = tmp_path / "local.mp4"
    proc = sr("run", V1, "--image", image, "--prompt", "the sun slides right", "--camera", "forward_up",
              "--dynamic-mask", mask, "--trajectory", "120,150 200,150 260,140", "-o", out, env=NO_SERVER, real=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out)
    assert_video(out, 5)


def test_local_run_reports_input_errors_with_exit_codes(image, tmp_path):
    proc = sr("run", V2, "--image", image, "--prompt", "x", "--duration", "7", "-o", tmp_path / "x.mp4", env=NO_SERVER)
    assert proc.returncode == Exit.INVALID_INPUT and "body.duration" in proc.stderr
    proc = sr("run", V2, "--image", tmp_path / "missing.png", "--prompt", "x", env=NO_SERVER)
    assert proc.returncode == Exit.USAGE and "no such file" in proc.stderr
    proc = sr("run", "fal-ai/kling-video/v9/none/image-to-video", "--image", image, "--prompt", "x", env=NO_SERVER)
    assert proc.returncode == Exit.NOT_FOUND
    proc = sr("run", V2, "--image", image, "--prompt", "x", "--no-wait", env=NO_SERVER)
    assert proc.returncode == Exit.USAGE
    assert not (tmp_path / "x.mp4").exists()


# --- against a server ----------------------------------------------------------------------------


def test_remote_run_uploads_local_files_and_saves_the_video(server, image, tmp_path):
    out = tmp_path / "remote.mp4"
    proc = sr("run", O3, "--image", image, "--shot", "a lamp flickers:2", "--shot", "it goes dark:1", "-o", out,
              "--server", server.url, "--key", server.key, env=NO_SERVER, real=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out)
    assert_video(out, 3)
    request_id = UUID.search(proc.stderr).group(0)
    with server.http() as http:
        mine = next(r for r in http.get("/api/requests", params={"limit": 5}).json() if r["request_id"] == request_id)
    assert mine["input"]["image_url"].startswith(server.url + "/files/")  # uploaded, not inlined
    assert [s["prompt"] for s in mine["input"]["multi_prompt"]] == ["a lamp flickers", "it goes dark"]


def test_status_result_and_cancel_for_requests_started_elsewhere(server, image, tmp_path):
    env = remote(server)
    with Client(server.url, server.key) as client:
        first = client.submit(O3, {"prompt": "first", "image_url": image, "duration": "3"})
        second = client.submit(V1, {"prompt": "second", "image_url": image, "duration": "10"})

    proc = sr("status", second.request_id, env=env)
    assert proc.returncode == 0 and proc.stdout.startswith("IN_QUEUE position "), proc.stdout
    proc = sr("result", second.request_id, "-o", tmp_path / "never.mp4", env=env, real=True)
    assert proc.returncode == Exit.NOT_READY and "--wait" in proc.stderr
    proc = sr("cancel", second.request_id, env=env)
    assert proc.returncode == 0 and second.request_id in proc.stdout

    out = tmp_path / "first.mp4"
    proc = sr("result", first.request_id, "--wait", "-o", out, env=env, real=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out)
    assert_video(out, 3)
    proc = sr("status", first.request_id, "--json", "--logs", env=env)
    assert proc.returncode == 0
    body = json.loads(proc.stdout)
    assert body["status"] == "COMPLETED" and body["logs"]
    assert sr("cancel", first.request_id, env=env).returncode == Exit.ALREADY_COMPLETED

    proc = sr("result", second.request_id, "-o", tmp_path / "never.mp4", env=env)
    assert proc.returncode == Exit.CANCELLED and "request_cancelled" in proc.stderr
    assert sr("status", second.request_id, env=env).stdout.startswith("COMPLETED with error [request_cancelled]")
    assert not (tmp_path / "never.mp4").exists()


def test_error_exit_codes_against_a_server(server, image, tmp_path):
    env = remote(server)
    proc = sr("run", V2, "--image", image, "--prompt", "x", "--duration", "7", env=env)
    assert proc.returncode == Exit.INVALID_INPUT and "body.duration" in proc.stderr
    proc = sr("run", V2, "--image", image, "--prompt", "x", "--duration", "10", "--cfg-scale", "0.5",
              "--negative-prompt", "blur", "--no-wait", env=env)
    assert proc.returncode == 0 and UUID.fullmatch(proc.stdout.strip()), proc.stderr
    assert sr("cancel", proc.stdout.strip(), env=env).returncode == 0  # keep the queue free for others
    proc = sr("status", "00000000-0000-0000-0000-000000000000", env=env)
    assert proc.returncode == Exit.NOT_FOUND
    proc = sr("status", "00000000-0000-0000-0000-000000000000", env={**env, "STILLREEL_KEY": "nope:nope"})
    assert proc.returncode == Exit.AUTH
    proc = sr("status", "x", "--server", f"http://127.0.0.1:{free_port()}", env=env)
    assert proc.returncode == Exit.UNREACHABLE and "cannot reach" in proc.stderr


def test_ctrl_c_cancels_the_remote_request(server, image, tmp_path):
    command = [*CLI_COMMAND, "run", V1, "--image", str(image), "--prompt", "a long one", "--duration", "10",
               "-o", str(tmp_path / "interrupted.mp4")]
    proc = subprocess.Popen(command, cwd=REPO, env=merged_env(remote(server)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    stderr: list[str] = []
    reader = threading.Thread(target=lambda: stderr.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        request_id = None
        with Client(server.url, server.key) as client:
            while time.monotonic() < deadline:
                if request_id is None and (found := UUID.search("".join(stderr))):
                    request_id = found.group(0)
                if request_id and client.status(request_id).in_progress:
                    break
                time.sleep(0.05)
            assert request_id, "".join(stderr)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(30) == Exit.INTERRUPTED
            reader.join(5)
            assert f"cancelled request {request_id}" in "".join(stderr)
            final = client.wait(request_id, timeout=60)
            assert final.cancelled
        assert not (tmp_path / "interrupted.mp4").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
