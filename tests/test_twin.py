"""`stillreel twin -- COMMAND`: unmodified fal clients (Python and Node) reach an embedded server."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from live_server import CLI_COMMAND, REPO
from stillreel.twin.server import route_name

PYAPP = REPO / "tests" / "apps" / "pyapp"
NODE_APP = REPO / "tests" / "js" / "apps" / "subscribe-app.mjs"


def twin(*command: str, cwd=REPO, timeout: float = 180, options=()) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI_COMMAND, "twin", *options, "--", *command], capture_output=True, text=True,
                          cwd=REPO if cwd is None else cwd, timeout=timeout,
                          env={**__import__("os").environ, "PYTHONPATH": str(REPO)})


def test_python_app_suite_runs_unmodified():
    # The app's suite runs from its own folder: nothing in it mentions stillreel.
    proc = twin(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(PYAPP / "test_app.py"),
                cwd=PYAPP)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
    summary = proc.stderr.strip().splitlines()[-1]
    assert summary.startswith("stillreel twin: ") and "submit 1" in summary and "upload 2" in summary, summary


def test_exit_status_is_the_commands():
    proc = twin(sys.executable, "-c", "raise SystemExit(3)")
    assert proc.returncode == 3
    assert "injected 0 faults" in proc.stderr


def test_sitecustomize_needs_no_stillreel():
    # -S skips site (no venv packages, no stillreel); only the generated folder is on the path.
    code = ("import sys, os; sys.path.insert(0, os.environ['PYTHONPATH'].split(os.pathsep)[0]); "
            "import sitecustomize; "
            "print('stillreel' in sys.modules, os.environ['FAL_KEY'], os.environ['STILLREEL_TWIN_URL'])")
    proc = twin(sys.executable, "-S", "-c", code)
    assert proc.returncode == 0, proc.stderr
    loaded, key, url = proc.stdout.split()
    assert loaded == "False" and key == "stillreel" and url.startswith("http://127.0.0.1:")


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_node_app_uses_fal_hosts_unmodified():
    proc = twin("node", str(NODE_APP))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["videoUrl"].startswith("http://127.0.0.1:") and out["bytes"] > 1000
    assert out["imageUrl"].startswith("http://127.0.0.1:")


@pytest.mark.parametrize("method,path,name", [
    ("POST", "/queue/fal-ai/kling-video/v2/master/image-to-video", "submit"),
    ("GET", "/queue/fal-ai/kling-video/requests/abc/status", "status"),
    ("GET", "/queue/fal-ai/kling-video/requests/abc/status/stream", "status"),
    ("GET", "/queue/fal-ai/kling-video/requests/abc", "result"),
    ("PUT", "/queue/fal-ai/kling-video/requests/abc/cancel", "cancel"),
    ("POST", "/fal-ai/kling-video/v2/master/image-to-video", "run"),
    ("POST", "/storage/auth/token", "upload"),
    ("POST", "/files/upload", "upload"),
    ("GET", "/files/b/x/y.png", "file"),
])
def test_route_names(method, path, name):
    assert route_name(method, path) == name


def test_cors_exposes_the_request_timeout_type(tmp_path):
    # A cross-origin browser can only tell a user deadline (never retried) if it may read this header.
    from fastapi.testclient import TestClient

    from stillreel.api.app import create_app
    from stillreel.config import Settings

    app = create_app(Settings(data_dir=tmp_path, auth=False, workers=0), run_services=False)
    with TestClient(app) as client:
        response = client.get("/healthz", headers={"Origin": "http://example.test"})
    exposed = [h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")]
    assert "x-fal-request-timeout-type" in exposed


FAULTS = ("--faults", "status=0.3,result=0.3,seed=7")


def test_python_app_rides_out_faults_on_status_and_result():
    proc = twin(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(PYAPP / "test_app.py"),
                cwd=PYAPP, options=FAULTS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = proc.stderr.strip().splitlines()[-1]
    injected = int(summary.split("injected ")[1].split()[0])
    assert injected > 0, summary


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_node_app_rides_out_faults_on_status_and_result():
    proc = twin("node", str(NODE_APP), options=FAULTS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "injected 0 faults" not in proc.stderr


def test_fault_on_every_submit_surfaces_as_an_error():
    code = ("import fal_client, sys\n"
            "try:\n    fal_client.submit('fal-ai/kling-video/v2/master/image-to-video', arguments={})\n"
            "except Exception as exc:\n    print(type(exc).__name__); sys.exit(5)\n")
    proc = twin(sys.executable, "-c", code, options=("--faults", "submit=1,seed=1"))
    assert proc.returncode == 5, proc.stdout + proc.stderr
    assert "submit" in proc.stderr.splitlines()[-1]


def test_bad_fault_spec_is_refused():
    proc = twin(sys.executable, "-c", "pass", options=("--faults", "nosuch=0.5"))
    assert proc.returncode == 2 and "unknown route" in proc.stderr


def test_fault_spec_is_deterministic():
    from stillreel.api.faults import FaultSpec

    spec = FaultSpec.parse("status=0.3,result=0.25,seed=42")
    assert spec.rates == {"status": 0.3, "result": 0.25} and spec.seed == 42


def test_serve_takes_faults(tmp_path):
    import httpx

    from live_server import LiveServer

    with LiveServer.start(tmp_path / "srv", auth=False, args=["--faults", "status=1,seed=3"]) as srv:
        response = httpx.get(f"{srv.url}/queue/fal-ai/kling-video/requests/nope/status")
        assert response.status_code in (429, 502, 503, 504)
        assert "x-fal-request-id" not in response.headers
        assert httpx.get(f"{srv.url}/healthz").status_code == 200


def _app_pytest(*flags: str) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *flags, "."], capture_output=True, text=True,
                          cwd=PYAPP, timeout=180, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_pytest_plugin_runs_the_app_suite_with_faults_fixture():
    proc = _app_pytest("--stillreel")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout


def test_pytest_plugin_is_inert_without_the_flag():
    proc = _app_pytest("-k", "faults")
    assert proc.returncode == 0 and "1 skipped" in proc.stdout, proc.stdout + proc.stderr


def test_start_deadline_expires_while_the_worker_is_busy(tmp_path):
    import time

    import httpx

    from live_server import LiveServer

    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 120, 200)).save(buffer, "PNG")
    data_uri = "data:image/png;base64," + __import__("base64").b64encode(buffer.getvalue()).decode()
    endpoint = "/queue/fal-ai/kling-video/v1/standard/image-to-video"
    with LiveServer.start(tmp_path / "srv", auth=False) as srv:
        busy = httpx.post(srv.url + endpoint, json={"prompt": "long", "image_url": data_uri, "duration": "10"}).json()
        waiting = httpx.post(srv.url + endpoint, json={"prompt": "late", "image_url": data_uri, "duration": "5"},
                             headers={"X-Fal-Request-Timeout": "1"}).json()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = httpx.get(waiting["status_url"]).json()
            if status["status"] == "COMPLETED":
                break
            time.sleep(0.1)
        first = httpx.get(busy["status_url"]).json()
        assert status["status"] == "COMPLETED" and status["error_type"] == "request_timeout", status
        assert first["status"] != "COMPLETED", "the worker finished first: the deadline was not enforced while busy"
        result = httpx.get(waiting["response_url"])
        assert result.status_code == 504 and result.headers["x-fal-request-timeout-type"] == "user"
