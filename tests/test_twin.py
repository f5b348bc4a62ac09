"""`stillreel twin -- COMMAND`: unmodified fal clients (Python and Node) reach an embedded server."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from live_server import CLI_COMMAND, REPO
from twin_helpers import V1, png_data_uri, twin, wait_status
from stillreel.twin.server import route_name

PYAPP = REPO / "tests" / "apps" / "pyapp"
NODE_APP = REPO / "tests" / "js" / "apps" / "subscribe-app.mjs"


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


def _faulted_requests(spec: str, n: int) -> list[bool]:
    """Which of the first n status requests ``spec`` faults, through the real middleware."""
    import asyncio

    from stillreel.api.faults import FaultMiddleware, FaultSpec

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def one(middleware) -> bool:
        sent = []

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": "/queue/fal-ai/kling-video/requests/a/status",
                 "headers": []}
        await middleware(scope, None, send)
        return sent[0]["status"] != 200

    middleware = FaultMiddleware(app, FaultSpec.parse(spec), route_name)

    async def run():
        return [await one(middleware) for _ in range(n)]

    return asyncio.run(run())


def test_fault_riding_specs_fault_however_few_polls_the_client_makes():
    # Every run polls status at least once and fetches the result: two status/result requests. The
    # suites that assert "some fault was injected" must fault within those two, not on the seventh
    # poll that only a slow machine reaches (seed 11 did, and failed on a fast CI machine).
    import re

    plugin_spec = re.search(r'SPEC = "([^"]+)"', (PYAPP / "test_faults.py").read_text()).group(1)
    for spec in (FAULTS[1], plugin_spec):
        assert any(_faulted_requests(spec, 2)), spec


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
        # A call in fal's proxy protocol is faulted by the route it targets.
        target = "https://queue.fal.run/fal-ai/kling-video/requests/nope/status"
        proxied = httpx.get(f"{srv.url}/api/fal/proxy", headers={"x-fal-target-url": target})
        assert proxied.status_code in (429, 502, 503, 504)
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

    image = png_data_uri()
    # The test engine sleeps per frame: 40 × 0.25 s keeps the one worker busy for 10 s, whatever
    # the machine's speed (a real engine's clip length is not a timing guarantee).
    with LiveServer.start(tmp_path / "srv", auth=False, engine="engines:StepEngine") as srv:
        busy = httpx.post(srv.url + V1, json={"prompt": "frames=40 delay=0.25", "image_url": image}).json()
        wait_status(busy["status_url"], lambda s: s["status"] == "IN_PROGRESS")
        submitted = time.monotonic()
        waiting = httpx.post(srv.url + V1, json={"prompt": "late", "image_url": image},
                             headers={"X-Fal-Request-Timeout": "1"}).json()
        status = wait_status(waiting["status_url"], lambda s: s["status"] == "COMPLETED", timeout=15)
        took = time.monotonic() - submitted
        assert status["error_type"] == "request_timeout", status
        assert took <= 1 + 1, f"the 1 s start deadline expired only after {took:.2f} s"
        assert httpx.get(busy["status_url"]).json()["status"] == "IN_PROGRESS"
        result = httpx.get(waiting["response_url"])
        assert result.status_code == 504 and result.headers["x-fal-request-timeout-type"] == "user"
        httpx.put(busy["cancel_url"])


# -- generation faults and queue delay ------------------------------------------------------------


def test_generation_fault_ends_completed_with_a_runner_error():
    # The real fal_client sees the request finish (COMPLETED) and raises fal's runner error.
    code = ("import json, time, fal_client\n"
            "h = fal_client.submit('fal-ai/kling-video/v2/master/image-to-video', arguments={'prompt': 'x', "
            "'image_url': %r})\n"
            "t0 = time.monotonic()\n"
            "while isinstance(h.status(), fal_client.Queued): time.sleep(0.05)\n"
            "queued = time.monotonic() - t0\n"
            "while not isinstance(h.status(), fal_client.Completed): time.sleep(0.05)\n"
            "try:\n    h.get()\nexcept fal_client.client.FalClientHTTPError as exc:\n"
            "    print(json.dumps({'status': exc.status_code, 'type': exc.error_type, 'detail': exc.message, "
            "'queued': queued}))\n") % png_data_uri()
    proc = twin(sys.executable, "-c", code, options=("--faults", "generation=1,queue_delay=1.5,seed=5"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (out["status"], out["type"]) in {(503, "runner_disconnected"), (502, "runner_incomplete_response"),
                                            (500, "runner_server_error")}, out
    assert isinstance(out["detail"], str) and out["detail"]
    assert 1.3 <= out["queued"] <= 1.5 + 1.5, out  # held in the queue for queue_delay seconds
    summary = proc.stderr.strip().splitlines()[-1]
    assert "injected 2 faults" in summary and out["type"] in summary and "queue_delay: 1" in summary, summary


def test_submit_faults_are_deterministic_with_the_seed():
    import asyncio

    from stillreel.api.faults import SCOPE_KEY, FaultMiddleware, FaultSpec

    def draws(spec: str) -> list:
        seen = []

        async def app(scope, receive, send):
            seen.append(scope.get(SCOPE_KEY))
            await send({"type": "http.response.start", "status": 200, "headers": []})

        middleware = FaultMiddleware(app, FaultSpec.parse(spec), route_name)

        async def run():
            async def send(message):
                pass
            for path in ["/queue/fal-ai/kling-video/v1/standard/image-to-video"] * 30:
                await middleware(dict(type="http", method="POST", path=path), None, send)
        asyncio.run(run())
        return [(d.failure, d.hold_s) for d in seen], middleware.injected

    first, injected = draws("generation=0.4,queue_delay=2,seed=9")
    assert first == draws("generation=0.4,queue_delay=2,seed=9")[0]
    assert first != draws("generation=0.4,queue_delay=2,seed=10")[0]
    failures = [f for f, _ in first if f]
    assert 0 < len(failures) < 30 and all(hold == 2 for _, hold in first)
    assert injected["queue_delay"] == 30 and sum(injected.values()) == 30 + len(failures)


def test_fault_spec_parses_generation_and_queue_delay():
    from stillreel.api.faults import FaultSpec

    spec = FaultSpec.parse("generation=0.2,queue_delay=3,status=0.1,seed=4")
    assert (spec.generation, spec.queue_delay, spec.rates, spec.seed) == (0.2, 3.0, {"status": 0.1}, 4)
    with pytest.raises(ValueError, match="between 0 and 1"):
        FaultSpec.parse("generation=2")
    with pytest.raises(ValueError, match="queue_delay"):
        FaultSpec.parse("queue_delay=-1")


# -- pytest plugin, twin environment --------------------------------------------------------------


@pytest.mark.parametrize("auth", [False, True])
def test_pytest_plugin_fixture_seeds_counts_and_keys(auth):
    import os

    flags = ["--stillreel"] + (["--stillreel-auth"] if auth else [])
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *flags, "."],
                          capture_output=True, text=True, cwd=REPO / "tests" / "apps" / "plugin", timeout=180,
                          env={**os.environ, "PYTHONPATH": str(REPO), "EXPECT_AUTH": "1" if auth else "0",
                               "FAL_KEY": "a-real-fal-key-must-not-be-used"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 passed" in proc.stdout


def test_twin_python_path_does_not_shadow_the_apps_modules(tmp_path):
    # An app's own top-level "server" module, on its PYTHONPATH after the twin's entry.
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "server.py").write_text("NAME = 'the app'\n")
    code = "import server, fal_client.client as c; print(server.NAME); print(c.REST_URL)"
    proc = twin(sys.executable, "-c", code, cwd=tmp_path, env={"PYTHONPATH": f"{REPO}:{lib}"})
    assert proc.returncode == 0, proc.stderr
    name, rest = proc.stdout.strip().splitlines()
    assert name == "the app" and rest.startswith("http://127.0.0.1:")


def test_print_env_lines_are_shell_quoted(tmp_path):
    import os
    import signal

    proc = subprocess.Popen([*CLI_COMMAND, "twin", "--print-env"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO), "NODE_OPTIONS": "--max-old-space-size=64 --title='x y'"})
    try:
        lines = []
        while len(lines) < 5:  # the URL twice, FAL_KEY, PYTHONPATH, NODE_OPTIONS
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            lines.append(line.rstrip("\n"))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    script = "\n".join(lines) + '\nprintf "%s\\n" "$NODE_OPTIONS" "$FAL_KEY"'
    shell = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
    node_options, key = shell.stdout.splitlines()
    assert node_options.endswith(" --max-old-space-size=64 --title='x y'") and key == "stillreel", shell


# -- an Express app behind @fal-ai/server-proxy ---------------------------------------------------

EXPRESS_APP = REPO / "tests" / "apps" / "express-proxy"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_express_app_behind_fal_server_proxy_runs_unmodified():
    # The app's packages are tests/js's install (package.json pins @fal-ai/server-proxy and express).
    modules = EXPRESS_APP / "node_modules"
    if not modules.exists():
        modules.symlink_to(REPO / "tests" / "js" / "node_modules", target_is_directory=True)
    if not (modules / "@fal-ai" / "server-proxy").exists():  # as tests/test_fal_client_js.py does
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=REPO / "tests" / "js", check=True, timeout=600)
    proc = twin("node", "main.mjs", cwd=EXPRESS_APP)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["imageUrl"].startswith("http://127.0.0.1:") and out["bytes"] > 1000, out
    assert "COMPLETED" in out["updates"] and out["streamed"][-1] == "COMPLETED", out
    summary = proc.stderr.strip().splitlines()[-1]
    assert "submit 2" in summary and "upload 2" in summary, summary  # initiate + PUT
