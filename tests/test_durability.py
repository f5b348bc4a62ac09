"""Nothing is lost: server restarts, workers killed with SIGKILL, webhooks that fail before they land."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import threading
import time

import httpx
import pytest
from apihelp import submit, wait
from live_server import _CLI, REPO, LiveServer, verify_fal_webhook


def test_request_submitted_before_a_restart_finishes_after_it(tmp_path):
    data = tmp_path / "srv"
    args = ["--engine", "engines:StepEngine"]
    first = LiveServer.start(data, engine=None, args=args)
    key = first.key
    with first.http() as c:
        running = submit(c, prompt="frames=200 delay=0.05")
        wait(c, running, until=("IN_PROGRESS",))
        queued = submit(c, prompt="frames=5")
    first.stop()
    second = LiveServer.start(data, engine=None, args=args)
    second.key = key  # the same data folder: the first server's key still works
    try:
        with second.http() as c:
            for sub in (running, queued):
                moved = {**sub, "status_url": sub["status_url"].replace(str(first.port), str(second.port))}
                status = wait(c, moved, timeout=90, logs=True)
                assert status["error"] is None, status
            logs = [entry["message"] for entry in c.get(f"/queue/fal-ai/kling-video/requests/{running['request_id']}/status",
                                                        params={"logs": 1}).json()["logs"]]
            assert any("re-queued" in m for m in logs)
    finally:
        second.stop()


def _worker(data, env, *extra):
    return subprocess.Popen(
        [*_CLI, "worker", "--data-dir", str(data), "--engine", "engines:StepEngine", "--lease-seconds", "2", *extra],
        cwd=REPO, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def test_a_worker_killed_mid_job_leaves_the_request_to_another(tmp_path, database_url):
    env = {"STILLREEL_DATABASE_URL": database_url} if database_url.startswith("postgres") else {}
    data = tmp_path / "srv"
    api = LiveServer.start(data, engine=None, args=["--workers", "0", "--engine", "engines:StepEngine"], env=env)
    workers = [_worker(data, env) for _ in range(2)]
    try:
        with api.http() as c:
            sub = submit(c, prompt="frames=120 delay=0.05")
            status = wait(c, sub, until=("IN_PROGRESS",), timeout=60)
            # Find the worker that holds it: its id names its pid.
            while True:
                status = c.get(sub["status_url"], params={"logs": 1}).json()
                started = [m["message"] for m in status.get("logs") or [] if m["message"].startswith("started on worker")]
                if started:
                    break
            holder = next(w for w in workers if f"-{w.pid}-" in started[0])
            os.killpg(holder.pid, signal.SIGKILL)
            final = wait(c, sub, timeout=90, logs=True)
            assert final["error"] is None, final
            messages = [m["message"] for m in final["logs"]]
            assert any("stopped answering" in m for m in messages)
            assert any("attempt 2" in m for m in messages)
            assert c.get(sub["response_url"]).status_code == 200
    finally:
        for w in workers:
            if w.poll() is None:
                os.killpg(w.pid, signal.SIGTERM)
                w.wait(15)
        api.stop()


class FlakyReceiver:
    """Answers 500 to the first ``failures`` webhook calls, then 200."""

    def __init__(self, failures: int):
        self.calls: list[dict] = []
        self.done = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.calls.append({"headers": dict(self.headers), "body": body})
                ok = len(outer.calls) > failures
                self.send_response(200 if ok else 500)
                self.send_header("Content-Length", "0")
                self.end_headers()
                if ok:
                    outer.done.set()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.mark.parametrize("prompt,status", [("frames=3", "OK"), ("fail", "ERROR")])
def test_webhooks_are_signed_and_retried(tmp_path, prompt, status):
    receiver = FlakyReceiver(failures=2)
    server = LiveServer.start(tmp_path / "srv", engine=None,
                              args=["--engine", "engines:StepEngine", "--webhook-backoff", "0.2,0.2,0.2",
                                    "--allow-private-urls"])  # the receiver is on loopback
    try:
        with server.http() as c:
            sub = submit(c, prompt=prompt, params={"fal_webhook": receiver.url})
            assert receiver.done.wait(60), f"{len(receiver.calls)} calls"
            jwks = c.get("/.well-known/jwks.json").json()
        assert len(receiver.calls) == 3  # two failures, then delivered once
        call = receiver.calls[-1]
        body = json.loads(call["body"])
        assert body["request_id"] == body["gateway_request_id"] == sub["request_id"]
        assert body["status"] == status
        if status == "OK":
            assert body["payload"]["video"]["url"].startswith("http")
        else:
            assert body["payload"]["detail"][0]["loc"] == ["body", "prompt"] and body["error"]
        assert verify_fal_webhook(call["headers"], call["body"], jwks)
        tampered = call["body"].replace(b"request_id", b"request_iD")
        assert not verify_fal_webhook(call["headers"], tampered, jwks)
    finally:
        server.stop()
        receiver.server.shutdown()


def test_first_serve_prints_a_key_once(tmp_path):
    port = __import__("live_server").free_port()
    cmd = [*_CLI, "serve", "--port", str(port), "--data-dir", str(tmp_path), "--engine", "engines:StepEngine"]
    outputs = []
    for _ in range(2):
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                start_new_session=True)
        try:
            for _ in range(200):
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            outputs.append(proc.communicate(timeout=20)[0])
    key = outputs[0].strip().splitlines()[-1]
    assert ":" in key and key not in outputs[1]
    listed = subprocess.run([*_CLI, "keys", "list", "--data-dir", str(tmp_path)], cwd=REPO, capture_output=True,
                            text=True, timeout=60).stdout
    assert key.split(":")[0] in listed
