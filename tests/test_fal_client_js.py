"""The real, unmodified ``@fal-ai/client`` (npm, pinned in tests/js/package.json) on Node 20,
against a live ``stillreel serve``: each ``tests/js/*.test.mjs`` file runs under ``node --test``,
then every video the JS side received is decoded here with PyAV.

Needs ``node`` (>= 20) and ``npm``; ``tests/js/node_modules`` is installed with ``npm ci`` (from the
lockfile) when missing or when it holds another @fal-ai/client version.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from kindcheck import check_kind_video, picture_png, rgb_of
from live_server import LiveServer, png_bytes, video_facts

JS = Path(__file__).resolve().parent / "js"
TEST_FILES = sorted(p.name for p in JS.glob("*.test.mjs"))
# Pictures for kinds.test.mjs (name: seed, size); "unrelated" is never sent: the control.
PICTURES = {"a": (61, 400, 300), "b": (62, 300, 400), "frontal": (63, 360, 360), "view": (64, 400, 300),
            "start": (65, 640, 360), "unrelated": (66, 400, 300)}


def pinned_version() -> str:
    return json.loads((JS / "package.json").read_text())["dependencies"]["@fal-ai/client"]


@pytest.fixture(scope="module")
def node_ready():
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "the JS client tests need node >= 20 and npm on PATH"
    major = int(subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip().lstrip("v").split(".")[0])
    assert major >= 20, f"node {major} is too old; the JS client tests need node >= 20"
    installed = JS / "node_modules" / "@fal-ai" / "client" / "package.json"
    if not installed.exists() or json.loads(installed.read_text())["version"] != pinned_version():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS, check=True, timeout=600)
    return node


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with LiveServer.start(tmp_path_factory.mktemp("fal-js"), auth=True, args=["--workers", "1"]) as srv:
        yield srv


@pytest.mark.parametrize("test_file", TEST_FILES)
def test_js_client(test_file, node_ready, server, tmp_path):
    image = tmp_path / "start.png"
    image.write_bytes(png_bytes(320, 240, seed=7))
    record = tmp_path / "videos.jsonl"
    record.touch()
    pictures = {}
    for name, (seed, width, height) in PICTURES.items():
        pictures[name] = tmp_path / f"{name}.png"
        pictures[name].write_bytes(picture_png(seed, width, height))
    env = {
        **os.environ,
        "STILLREEL_URL": server.url,
        "STILLREEL_KEY": server.key,
        "STILLREEL_TEST_IMAGE": str(image),
        "STILLREEL_TEST_RECORD": str(record),
        "STILLREEL_TEST_PICTURES": json.dumps({n: str(p) for n, p in pictures.items() if n != "unrelated"}),
        "FAL_KEY": "",  # the tests pass credentials explicitly; never pick up a real key
    }
    proc = subprocess.run([node_ready, "--test", "--test-reporter=spec", test_file], cwd=JS, env=env,
                          capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, f"node --test {test_file} failed:\n{proc.stdout}\n{proc.stderr}\n--- server log ---\n{server.log_text(6000)}"

    # Every video the JS client got back decodes as H.264 with frames.
    for line in record.read_text().splitlines():
        entry = json.loads(line)
        path = tmp_path / f"{entry['label']}.mp4"
        path.write_bytes(httpx.get(entry["url"], timeout=60).content)
        facts = video_facts(path)
        assert facts["codec"] == "h264" and facts["frames"] > 0, (entry, facts)
        if "expect" in entry:  # kinds.test.mjs: what the clip must be, checked on the decoded frames
            expect = dict(entry["expect"])
            expect["shows"] = [rgb_of(pictures[n]) for n in expect.get("shows", [])]
            if "starts_on" in expect:
                expect["starts_on"] = rgb_of(pictures[expect["starts_on"]])
            check_kind_video(path, unrelated=rgb_of(pictures["unrelated"]), **expect)


def test_every_js_test_file_is_run():
    # Guards the parametrization above against an empty glob (a moved folder would pass silently).
    assert {"queue.test.mjs", "storage.test.mjs", "routing.test.mjs", "kinds.test.mjs", "tokens.test.mjs"} <= set(TEST_FILES)
