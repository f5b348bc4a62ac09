"""API benchmark: status polls per second and submit → IN_PROGRESS latency, side by side with a bare
uvicorn JSON endpoint in the same run.

    .venv/bin/python bench/api.py [--seconds 5] [--clients 4] [--samples 30]

Goals (issue #2): status at ≥ 0.5× the bare endpoint's rate; submit → IN_PROGRESS p50 ≤ 20 ms on the
embedded default (SQLite, motion engine) with an idle worker.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from live_server import LiveServer, free_port  # noqa: E402

V2 = "fal-ai/kling-video/v2/master/image-to-video"

BARE_APP = textwrap.dedent('''
    from fastapi import FastAPI
    app = FastAPI()
    BODY = {"status": "COMPLETED", "request_id": "x" * 36, "response_url": "http://h/" + "x" * 60,
            "status_url": "http://h/" + "x" * 67, "cancel_url": "http://h/" + "x" * 67,
            "logs": None, "metrics": {"inference_time": 1.0}, "error": None, "error_type": None}
    @app.get("/status")
    def status():
        return BODY
''')


def hammer(url: str, headers: dict, seconds: float, clients: int) -> float:
    """Requests per second from ``clients`` keep-alive connections for ``seconds``."""
    counts = [0] * clients
    stop = time.monotonic() + seconds

    def loop(i):
        with httpx.Client(headers=headers, timeout=10) as c:
            while time.monotonic() < stop:
                r = c.get(url)
                assert r.status_code < 300, r.text
                counts[i] += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / seconds


def bare_server(tmp: Path) -> tuple[subprocess.Popen, str]:
    (tmp / "bare_app.py").write_text(BARE_APP)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "bare_app:app", "--port", str(port), "--log-level",
                             "warning"], cwd=tmp, start_new_session=True)
    url = f"http://127.0.0.1:{port}/status"
    for _ in range(100):
        try:
            httpx.get(url)
            break
        except httpx.TransportError:
            time.sleep(0.1)
    return proc, url


def image_uri() -> str:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray((rng.random((360, 640, 3)) * 255).astype(np.uint8)).save(buf, "JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def submit_latency(server: LiveServer, samples: int) -> list[float]:
    """Time from sending the submit to the first status poll that says IN_PROGRESS (worker idle)."""
    out = []
    with server.http() as c:
        # As fal's clients do: upload the image once, then submit its URL.
        uri = c.post("/files/upload", content=base64.b64decode(image_uri().split(",")[1]),
                     headers={"Content-Type": "image/jpeg", "X-Fal-File-Name": "bench.jpg"}).json()["access_url"]
        for _ in range(samples):
            t0 = time.perf_counter()
            sub = c.post(f"/queue/{V2}", json={"prompt": "bench", "image_url": uri}).json()
            while c.get(sub["status_url"]).json()["status"] == "IN_QUEUE":
                pass
            out.append((time.perf_counter() - t0) * 1000)
            c.put(sub["cancel_url"])
            while c.get(sub["status_url"]).json()["status"] != "COMPLETED":
                time.sleep(0.01)
            time.sleep(0.2)  # idle worker again
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--samples", type=int, default=30)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="stillreel-bench-"))
    bare, bare_url = bare_server(tmp)
    server = LiveServer.start(tmp / "data", auth=True)
    try:
        latencies = submit_latency(server, args.samples)
        with server.http() as c:
            sub = c.post(f"/queue/{V2}", json={"prompt": "bench", "image_url": image_uri()}).json()
            c.put(sub["cancel_url"])
            while c.get(sub["status_url"]).json()["status"] != "COMPLETED":
                time.sleep(0.05)
            queued = c.post(f"/queue/{V2}", json={"prompt": "bench", "image_url": image_uri()}).json()
        # Alternate the two targets so that both see the same machine conditions.
        ours, bare_rates = [], []
        for _ in range(2):
            bare_rates.append(hammer(bare_url, {}, args.seconds, args.clients))
            ours.append(hammer(sub["status_url"] + "?logs=0", server.headers, args.seconds, args.clients))
        ours_logs = hammer(sub["status_url"] + "?logs=1", server.headers, args.seconds, args.clients)
        ours_queued = hammer(queued["status_url"], server.headers, args.seconds, args.clients)
    finally:
        server.stop()
        os.killpg(bare.pid, signal.SIGTERM)
        shutil.rmtree(tmp, ignore_errors=True)
    rate, bare_rate = statistics.mean(ours), statistics.mean(bare_rates)
    p50 = statistics.median(latencies)
    p95 = sorted(latencies)[int(0.95 * (len(latencies) - 1))]
    print(f"machine: {os.cpu_count()} cores; {args.clients} keep-alive clients x {args.seconds:.0f} s, twice each")
    print(f"bare uvicorn JSON endpoint      : {bare_rate:8.0f} req/s")
    print(f"status (COMPLETED, logs=0, key) : {rate:8.0f} req/s  ratio {rate / bare_rate:.2f} (goal >= 0.5)")
    print(f"status (COMPLETED, logs=1, key) : {ours_logs:8.0f} req/s  ratio {ours_logs / bare_rate:.2f}")
    print(f"status (IN_QUEUE + position)    : {ours_queued:8.0f} req/s  ratio {ours_queued / bare_rate:.2f}")
    print(f"submit -> IN_PROGRESS ({len(latencies)} samples): p50 {p50:.1f} ms, p95 {p95:.1f} ms (goal p50 <= 20 ms)")


if __name__ == "__main__":
    main()
