"""The client side of tests/test_cluster.py, run inside the cluster's client namespace.

It serves the input image and receives webhooks (one HTTP server), submits N requests spread over the
API hosts (moving on to the next host when one does not answer), writes its progress (webhooks
received) to a file the test watches to time its faults, waits until every accepted request has
called back, and then audits the deployment: every row in the database, every object in the bucket.
The audit is written as JSON for the test to assert on.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import boto3
import httpx
import numpy as np
import sqlalchemy as sa
from PIL import Image

ENDPOINT = "fal-ai/kling-video/v1/standard/image-to-video"
webhooks: dict[str, list[str]] = defaultdict(list)
lock = threading.Lock()


def png() -> bytes:
    rng = np.random.default_rng(5)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


class Handler(BaseHTTPRequestHandler):
    image = png()

    def do_GET(self):  # the input image every request names
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(self.image)))
        self.end_headers()
        self.wfile.write(self.image)

    def do_POST(self):  # webhooks
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        with lock:
            webhooks[body["request_id"]].append(body["status"])
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def submit(apis: list[str], me: str, i: int) -> str | None:
    """Submit one request, trying each API host in turn until one accepts it."""
    body = {"prompt": f"frames=6 delay=0.01 request {i}", "image_url": f"http://{me}:9000/in.png", "duration": "5"}
    for attempt in range(60):
        api = apis[(i + attempt) % len(apis)]
        try:
            r = httpx.post(f"{api}/queue/{ENDPOINT}", json=body, timeout=5,
                           params={"fal_webhook": f"http://{me}:9000/hook"})
        except httpx.TransportError:
            time.sleep(0.2)
            continue
        if r.status_code == 200:
            return r.json()["request_id"]
        if r.status_code < 500:
            raise RuntimeError(f"submit refused: {r.status_code} {r.text}")
        time.sleep(0.5)  # 503 while the database restarts: come back
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--me", required=True)
    ap.add_argument("--api", action="append", required=True)
    ap.add_argument("-n", type=int, default=500)
    ap.add_argument("--db", required=True)
    ap.add_argument("--s3", required=True)
    ap.add_argument("--bucket", required=True)
    ap.add_argument("--progress", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--wait", type=float, default=400)
    args = ap.parse_args()

    s3 = boto3.client("s3", endpoint_url=args.s3, region_name="us-east-1")
    s3.create_bucket(Bucket=args.bucket)
    server = ThreadingHTTPServer((args.me, 9000), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    # Progress (requests called back, of N) is written from the start, while submits are still
    # going: the test times its faults by it, and they must land on work in progress.
    stop_progress = threading.Event()

    def report_progress():
        while not stop_progress.wait(0.2):
            with lock:
                done = len(webhooks)
            with open(args.progress + ".tmp", "w") as f:
                f.write(f"{done} {args.n}")
            os.replace(args.progress + ".tmp", args.progress)

    threading.Thread(target=report_progress, daemon=True).start()
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        accepted = [rid for rid in pool.map(lambda i: submit(args.api, args.me, i), range(args.n)) if rid]
    submitted_s = time.monotonic() - started

    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline:
        with lock:
            done = sum(1 for rid in accepted if webhooks.get(rid))
        if done == len(accepted):
            break
        time.sleep(0.5)
    stop_progress.set()
    # Deliveries that the killed API host had claimed stay held until their claim lapses (a minute or
    # so); then a live host sends them again. Wait for the outbox to drain and uploads to settle.
    engine = sa.create_engine(args.db, pool_pre_ping=True)  # the database was restarted meanwhile
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            pending = conn.execute(sa.text("select count(*) from webhook_outbox where state = 'pending'")).scalar()
            # Uploads not yet settled: an orphan (its worker cut off or killed between upload and
            # finish) is deleted by the API's sweep once its grace period is over.
            pending += conn.execute(sa.text("select count(*) from output_uploads")).scalar()
        if not pending:
            break
        time.sleep(1)
    time.sleep(3)  # late duplicates, if any, arrive now

    with engine.connect() as conn:
        rows = conn.execute(sa.text("select id, status, result, attempts from requests")).mappings().all()
        outbox = conn.execute(sa.text("select request_id, state from webhook_outbox")).mappings().all()
    objects = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=args.bucket):
        objects += [o["Key"] for o in page.get("Contents", [])]
    results = {}
    for row in rows:
        result = row["result"] if isinstance(row["result"], dict) else json.loads(row["result"] or "null")
        results[row["id"]] = urlsplit(result["video"]["url"]).path if result else None
    with lock:
        received = {rid: list(v) for rid, v in webhooks.items()}
    json.dump({
        "accepted": accepted, "submitted_s": submitted_s, "elapsed_s": time.monotonic() - started,
        "statuses": Counter(r["status"] for r in rows), "rows": len(rows),
        "attempts": Counter(r["attempts"] for r in rows),
        "result_paths": results, "objects": objects,
        "webhooks": received, "outbox": Counter(r["state"] for r in outbox),
    }, open(args.out, "w"))
    server.shutdown()


if __name__ == "__main__":
    main()
