"""API benchmark with a real load generator (``wrk``): three servers side by side in one run.

    .venv/bin/python bench/api.py [--seconds 3] [--connections 16] [--database-url postgresql://…]
                                  [--baseline-tree DIR] [--profile DIR] [--samples 30] [--rounds 3]
                                  [--api-processes 4] [--json FILE]

Servers, each one uvicorn process (httptools + uvloop), started in the same run:

- *raw ASGI*: a bare ASGI callable answering a finished request's status JSON (same size and shape);
- *FastAPI*: one FastAPI route returning the same JSON as a dict;
- *stillreel*: ``stillreel serve`` with auth on, SQLite (or ``--database-url``), one worker, and the
  queue test engine from ``tests/engines.py`` (steerable from the prompt, so a request can be kept
  running or queued for the length of a case);
- with ``--baseline-tree DIR`` (e.g. ``mkdir /tmp/before && git archive <commit> | tar -x -C /tmp/before``), stillreel from that
  checkout as a fourth server: before/after in the same run.

Cases (``wrk -t1 -cN -dS --latency``; all requests authorized with ``Authorization: Key``): status of
a finished request, of a queued one (``queue_position``), of a running one with ``logs=1``; result of
a finished request; submit (a wrk Lua script POSTing a real body: every submit queues a request,
behind the running one, so the worker stays out of the figure).
Before those, submit → IN_PROGRESS latency with an idle worker (the time from sending the submit to the first
status poll that says IN_PROGRESS), also through the API-only processes with ``--api-processes N`` (their
submits are run by the ``stillreel serve`` worker, another process). wrk runs on the same cores as the
servers. ``--rounds R`` repeats every case on every server R times (each round back to back on all of
them) and reports medians: each ratio is the median of the ratios taken within one round, which is
what stays comparable on a loaded machine.

Goals (issue 13): status ≥ 0.5× raw ASGI for finished and queued requests; submits ≥ 0.5× the FastAPI
route; submit → IN_PROGRESS p50 ≤ 20 ms.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
import live_server  # noqa: E402
from live_server import LiveServer, free_port  # noqa: E402
from profiling import profile, summarize_profile  # noqa: E402

V2 = "fal-ai/kling-video/v2/master/image-to-video"
APP = "fal-ai/kling-video"

BODY = {"request_id": "x" * 36, "response_url": "http://h/" + "x" * 60, "status_url": "http://h/" + "x" * 67,
        "cancel_url": "http://h/" + "x" * 67, "status": "COMPLETED", "logs": None,
        "metrics": {"inference_time": 1.0}, "error": None, "error_type": None, "progress": 100.0}

BARE_APPS = textwrap.dedent('''
    import json
    BODY = json.loads(%r)
    RAW = json.dumps(BODY, separators=(",", ":")).encode()
    HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(RAW)).encode())]

    async def raw(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": RAW})

    from fastapi import FastAPI, Request
    fastapi_app = FastAPI()

    @fastapi_app.get("/status")
    def status():
        return BODY

    @fastapi_app.post("/submit")
    async def submit(request: Request):
        await request.json()
        return BODY
''') % json.dumps(BODY)

SUBMIT_LUA = textwrap.dedent('''
    wrk.method = "POST"
    wrk.body = %s
    wrk.headers["Content-Type"] = "application/json"
    wrk.headers["Authorization"] = %s
''')


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# -- servers -------------------------------------------------------------------------------------


def start_bare(tmp: Path, target: str) -> tuple[subprocess.Popen, int]:
    (tmp / "bare_apps.py").write_text(BARE_APPS)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", f"bare_apps:{target}", "--port", str(port),
                             "--http", "httptools", "--loop", "uvloop", "--log-level", "warning"],
                            cwd=tmp, start_new_session=True)
    for _ in range(200):
        try:
            httpx.post(f"http://127.0.0.1:{port}/submit", json={})
            return proc, port
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"{target} did not start")


def start_stillreel(data: Path, tree: Path, env: dict) -> LiveServer:
    live_server.REPO = tree  # the server runs with cwd = that checkout, so its stillreel/ is imported
    env = {**env, "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])}
    return LiveServer.start(data, auth=True, engine="engines:StepEngine", env=env)


def start_api_processes(data: Path, env: dict, n: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    full = {**os.environ, **env, "STILLREEL_DATA_DIR": str(data),
            "PYTHONPATH": os.pathsep.join([str(REPO / "bench"), str(REPO)])}
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "api_processes:app", "--workers", str(n),
                             "--port", str(port), "--http", "httptools", "--loop", "uvloop", "--log-level", "warning"],
                            cwd=REPO, env=full, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            httpx.get(f"{url}/healthz")
            return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("the API processes did not start")


def reset_database(url: str | None) -> None:
    if not url:
        return
    sys.path.insert(0, str(REPO))
    from stillreel.config import Settings
    from stillreel.jobs.schema import make_engine, metadata

    engine = make_engine(Settings(database_url=url).db_url)
    metadata.drop_all(engine)
    engine.dispose()


# -- wrk -----------------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * _UNITS[unit]


def wrk(url: str, args, headers: dict | None = None, script: Path | None = None) -> dict:
    command = ["wrk", "-t1", f"-c{args.connections}", f"-d{args.seconds}s", "--latency"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    if script:
        command += ["-s", str(script)]
    out = subprocess.run(command + [url], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.M))
    if len(lat) < 2:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rate, "p50_ms": _ms(lat["50"]), "p99_ms": _ms(lat["99"]),
            "non_2xx": int(bad.group(1)) if bad else 0, "socket_errors": errors.group(1) if errors else None}


# -- stillreel set-up ----------------------------------------------------------------------------


def submit(c: httpx.Client, prompt: str, image_url: str, **headers) -> dict:
    r = c.post(f"/queue/{V2}", json={"prompt": prompt, "image_url": image_url}, headers=headers)
    r.raise_for_status()
    return r.json()


def wait_status(c: httpx.Client, sub: dict, wanted: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while c.get(sub["status_url"]).json()["status"] != wanted:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{sub['request_id']} never reached {wanted}")
        time.sleep(0.01)


def upload_image(c: httpx.Client) -> str:
    sys.path.insert(0, str(REPO / "tests"))
    from apihelp import png_bytes

    r = c.post("/files/upload", content=png_bytes(), headers={"Content-Type": "image/png", "X-Fal-File-Name": "b.png"})
    r.raise_for_status()
    return r.json()["access_url"]


def submit_latency(client: httpx.Client, image: str, samples: int) -> list[float]:
    """Submit → the first status poll that says IN_PROGRESS, idle worker, ``samples`` times (ms)."""
    out = []
    for _ in range(samples):
        t0 = time.perf_counter()
        sub = submit(client, "frames=2 delay=0.01", image)
        while client.get(sub["status_url"]).json()["status"] == "IN_QUEUE":
            pass
        out.append((time.perf_counter() - t0) * 1000)
        wait_status(client, sub, "COMPLETED")
        time.sleep(0.1)  # idle worker again
    return out


# -- the run -------------------------------------------------------------------------------------


CASES = ("status finished", "status queued", "status running logs=1", "result finished")


def prepare(server: LiveServer) -> dict:
    """A finished request, one kept running (logs=1 has lines to send), five queued behind it."""
    with server.http() as c:
        image = upload_image(c)
        finished = submit(c, "frames=3 delay=0.01", image)
        wait_status(c, finished, "COMPLETED")
        running = submit(c, "frames=100000 delay=0.05", image)
        wait_status(c, running, "IN_PROGRESS")
        time.sleep(0.5)  # some log lines
        queued = [submit(c, "frames=3", image) for _ in range(5)]
    return {"image": image, "running": running, "queued": queued, "urls": {
        "status finished": finished["status_url"], "status queued": queued[-1]["status_url"],
        "status running logs=1": running["status_url"] + "?logs=1", "result finished": finished["response_url"]}}


def submit_script(tmp: Path, name: str, image: str, authorization: str) -> Path:
    script = tmp / f"{name}-submit.lua"
    script.write_text(SUBMIT_LUA % (_lua_string(json.dumps({"prompt": "frames=3", "image_url": image})),
                                    _lua_string(authorization)))
    return script


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--samples", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=1,
                    help="run every case on every server this many times, back to back; report medians")
    ap.add_argument("--database-url", default=None, help="run stillreel on this database (dropped first!)")
    ap.add_argument("--baseline-tree", type=Path, default=None, help="a checkout of the code to compare with")
    ap.add_argument("--profile", type=Path, default=None, help="py-spy the stillreel servers; raw stacks here")
    ap.add_argument("--api-processes", type=int, default=0,
                    help="also run N API-only uvicorn processes on stillreel's database (column 'stillreel ×N')")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (make system-deps)")
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    if args.baseline_tree and args.database_url:
        sys.exit("--baseline-tree runs a second server, which needs its own database: use SQLite for it")
    tmp = Path(tempfile.mkdtemp(prefix="stillreel-bench-"))
    env = {"STILLREEL_DATABASE_URL": args.database_url} if args.database_url else {}
    procs = []
    servers: dict[str, LiveServer] = {}
    results: dict[str, dict] = collections.defaultdict(lambda: collections.defaultdict(list))
    latencies: dict[str, list[float]] = {}
    many = f"stillreel ×{args.api_processes}"
    try:
        raw, raw_port = start_bare(tmp, "raw")
        fa, fa_port = start_bare(tmp, "fastapi_app")
        procs += [raw, fa]
        trees = {"stillreel": REPO}
        if args.baseline_tree:
            trees["before"] = args.baseline_tree.resolve()
        reset_database(args.database_url)
        setups = {}
        extra = {}  # name -> (base URL, the stillreel server whose database and worker it uses)
        for name, tree in trees.items():
            servers[name] = start_stillreel(tmp / name, tree, env)
            if name == "stillreel":  # first, while the worker is idle
                with servers[name].http() as c:
                    latencies[name] = submit_latency(c, upload_image(c), args.samples)
                if args.api_processes:  # submitted to an API-only process, run by the worker of another
                    multi, multi_url = start_api_processes(tmp / "stillreel", env, args.api_processes)
                    procs.append(multi)
                    extra[many] = (multi_url, servers[name])
                    with httpx.Client(base_url=multi_url, headers=servers[name].headers, timeout=60) as c:
                        latencies[many] = submit_latency(c, upload_image(c), args.samples)
            setups[name] = prepare(servers[name])
        # Every server stays up for the whole run, and each case runs on all of them back to back.
        for _ in range(args.rounds):
            for case in CASES:
                results[case]["raw ASGI"].append(wrk(f"http://127.0.0.1:{raw_port}/status", args))
                results[case]["FastAPI"].append(wrk(f"http://127.0.0.1:{fa_port}/status", args))
                for name, server in servers.items():
                    prof = None
                    if args.profile and case == "status finished":
                        prof = profile(server.process.pid, args.seconds, args.profile / f"{name}.raw")
                    results[case][name].append(wrk(setups[name]["urls"][case], args, server.headers))
                    if prof:
                        prof.wait()
                for name, (base, sibling) in extra.items():
                    url = setups["stillreel"]["urls"][case].replace(sibling.url, base)
                    results[case][name].append(wrk(url, args, sibling.headers))
            script = tmp / "bare-submit.lua"
            script.write_text(SUBMIT_LUA % (_lua_string(json.dumps({"prompt": "frames=3", "image_url": "x"})), '"Key x"'))
            results["submit"]["FastAPI"].append(wrk(f"http://127.0.0.1:{fa_port}/submit", args, script=script))
            for name, server in servers.items():
                prof = None
                if args.profile:
                    prof = profile(server.process.pid, args.seconds, args.profile / f"{name}-submit.raw")
                script = submit_script(tmp, name, setups[name]["image"], server.headers["Authorization"])
                results["submit"][name].append(wrk(f"{server.url}/queue/{V2}", args, script=script))
                if prof:
                    prof.wait()
            for name, (base, sibling) in extra.items():
                script = submit_script(tmp, "extra", setups["stillreel"]["image"], sibling.headers["Authorization"])
                results["submit"][name].append(wrk(f"{base}/queue/{V2}", args, script=script))
    finally:
        for server in servers.values():
            server.stop()
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
        shutil.rmtree(tmp, ignore_errors=True)
    report(results, latencies, args)


# Goals (issue 13): these cases against these columns, at least 0.5×.
GOALS = {"status finished": "raw ASGI", "status queued": "raw ASGI", "submit": "FastAPI"}


def _median_run(runs: list[dict]) -> dict:
    """The median of each figure over the rounds (non-2xx summed)."""
    out = {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50_ms", "p99_ms")}
    out["non_2xx"] = sum(r["non_2xx"] for r in runs)
    return out


def _ratio(row: dict, name: str, base: str) -> float | None:
    """Median over the rounds of (name's rate / base's rate in the same round)."""
    if not row.get(name) or not row.get(base):
        return None
    return statistics.median(a["rps"] / b["rps"] for a, b in zip(row[name], row[base]))


def report(results: dict, latencies: dict[str, list[float]], args) -> None:
    db = "PostgreSQL" if args.database_url else "SQLite"
    print(f"wrk -t1 -c{args.connections} -d{args.seconds}s --latency, {args.rounds} round(s), medians; "
          f"{os.cpu_count()} cores; stillreel on {db}, auth on, one worker; load average {os.getloadavg()[0]:.1f}")
    ours = ["stillreel"] + ([f"stillreel ×{args.api_processes}"] if args.api_processes else [])
    order = ["raw ASGI", "FastAPI", "stillreel", "before", *ours[1:]]
    names = [n for n in order if any(n in r for r in results.values())]
    ratio_names = [f"{o} / {b}" for o in ours for b in ("raw", "FastAPI")]
    print("| case | " + " | ".join(names) + " | " + " | ".join(ratio_names) + " | goal |")
    print("|---" * (len(names) + len(ratio_names) + 2) + "|")
    for case, row in results.items():
        cells = []
        for n in names:
            if not row.get(n):
                cells.append("–")
                continue
            r = _median_run(row[n])
            bad = f", {r['non_2xx']} non-2xx" if r["non_2xx"] else ""
            cells.append(f"{r['rps']:,.0f} req/s (p50 {r['p50_ms']:.2f} / p99 {r['p99_ms']:.2f} ms{bad})")
        ratios, verdicts = [], []
        for o in ours:
            for b, base in (("raw", "raw ASGI"), ("FastAPI", "FastAPI")):
                value = _ratio(row, o, base)
                ratios.append("–" if value is None else f"{value:.2f}×")
                if GOALS.get(case) == base and value is not None:
                    verdicts.append(f"{o}: {'✓' if value >= 0.5 else '✗'} ≥ 0.5× {b}")
        print(f"| {case} | " + " | ".join(cells) + " | " + " | ".join(ratios) + f" | {'; '.join(verdicts) or '–'} |")
    for name, values in latencies.items():
        p95 = sorted(values)[int(0.95 * (len(values) - 1))]
        p50 = statistics.median(values)
        print(f"submit -> IN_PROGRESS via {name} ({len(values)} samples, idle worker): p50 {p50:.1f} ms, "
              f"p95 {p95:.1f} ms ({'✓' if p50 <= 20 else '✗'} goal p50 <= 20 ms)")
    if args.profile:
        for path in sorted(args.profile.glob("*.raw")):
            own, inclusive = summarize_profile(path)
            print(f"\npy-spy {path.stem}, event loop thread: self | inclusive share of samples")
            for (a, x), (b, y) in zip(own, inclusive):
                print(f"  {x * 100:5.1f}% {a:<55} | {y * 100:5.1f}% {b}")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "submit_to_in_progress_ms": latencies}, indent=1))


if __name__ == "__main__":
    main()
