"""bench/gpu.sh's results: one JSON per run, and the BENCHMARKS.md table rendered from it.

    python bench/gpu_report.py collect OUT_DIR     # OUT_DIR/{versions,stages,smoke,speed} → OUT_DIR/gpu.json
    python bench/gpu_report.py save OUT_DIR/gpu.json   # copy to bench/results/<date>-<gpu>.json, print table
    python bench/gpu_report.py table bench/results/FILE.json   # the Markdown table for BENCHMARKS.md

gpu.json: {"schema": "stillreel-gpu-bench/1", "date", "commit", "tiny", "gpu", "versions": {...},
"stages": {name: {"status", "seconds"}}, "smoke": [one object per family, "ok"],
"speed": {model: {"width", "height", "frames", "card_steps", "timed_steps", "lines": [{"label",
"projected_seconds", "speedup", "peak_gib", ...}]}}}. A stage cut by its deadline has status 124.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCHEMA = "stillreel-gpu-bench/1"


def _read(path: Path, default):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def _head() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, timeout=10).stdout.strip() or None
    except OSError:
        return None


def collect(out: Path) -> dict:
    stages = {}
    for line in (out / "stages.txt").read_text().splitlines() if (out / "stages.txt").exists() else []:
        name, status, seconds = line.split()
        stages[name] = {"status": int(status) if status.lstrip("-").isdigit() else status, "seconds": int(seconds)}
    smoke_file = out / "smoke.jsonl"
    smoke = [json.loads(x) for x in smoke_file.read_text().splitlines() if x.strip()] if smoke_file.exists() else []
    speed = _read(out / "speed.json", {})
    versions = _read(out / "versions.json", {})
    commit = _head()
    doc = {"schema": SCHEMA, "date": time.strftime("%Y-%m-%d", time.gmtime()), "commit": commit,
           "tiny": bool(speed.get("tiny", False)), "gpu": versions.get("gpu"), "versions": versions,
           "stages": stages, "smoke": smoke, "speed": speed.get("results", {})}
    (out / "gpu.json").write_text(json.dumps(doc, indent=2))
    return doc


def table(doc: dict) -> str:
    v = doc["versions"]
    rows = [f"{doc['date']}, {doc['gpu'] or 'no GPU (dry run)'}; torch {v.get('torch')} (CUDA {v.get('cuda')}), "
            f"diffusers {v.get('diffusers')}, transformers {v.get('transformers')}; commit {doc['commit']}", ""]
    for model, fig in doc["speed"].items():
        rows += [f"{model}, {fig['width']}×{fig['height']}, {fig['frames']} frames, {fig['timed_steps']} timed "
                 f"steps projected to {fig['card_steps']}:", "",
                 "| line | steps | s per clip | speed-up | peak GiB | output vs plain |",
                 "| --- | ---: | ---: | ---: | ---: | --- |"]
        for line in fig["lines"]:
            diff = (f"mean {line['diff_vs_plain_mean']:.3f}, max {line['diff_vs_plain_max']}"
                    if "diff_vs_plain_mean" in line else "")
            rows.append(f"| {line['label']} | {line['projected_steps']} | {line['projected_seconds']:.1f} | "
                        f"×{line['speedup']:.2f} | {line['peak_gib']:.1f} | {diff} |")
        rows += [f"{e['label']}: FAILED ({e['error']})" for e in fig.get("errors", [])]
        rows.append("")
    smoke = doc["smoke"]
    rows.append(f"Smoke: {sum(s['ok'] for s in smoke)}/{len(smoke)} families OK "
                f"({', '.join(s['family'] + ('' if s['ok'] else ' FAILED') for s in smoke)}).")
    cut = [name for name, s in doc["stages"].items() if s["status"] != 0]
    if cut:
        status = [f"{name} (status {doc['stages'][name]['status']})" for name in cut]
        rows.append(f"Stages not finished: {', '.join(status)}.")
    return "\n".join(rows)


def save(path: Path) -> Path:
    doc = json.loads(path.read_text())
    if doc.get("commit") is None:  # the device machine's copy of the tree has no .git: the one sent is HEAD here
        doc["commit"] = _head()
    slug = re.sub(r"[^a-z0-9]+", "-", (doc["gpu"] or "cpu").lower()).strip("-")
    target = REPO / "bench" / "results" / f"{doc['date']}-{slug}{'-tiny' if doc['tiny'] else ''}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(doc, indent=2) + "\n")
    return target


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("collect", "save", "table"):
        print(__doc__, file=sys.stderr)
        return 2
    verb, path = argv[0], Path(argv[1])
    if verb == "collect":
        doc = collect(path)
        print(f"wrote {path / 'gpu.json'}\n")
    elif verb == "save":
        target = save(path)
        doc = json.loads(target.read_text())
        print(f"wrote {target}\n")
    else:
        doc = json.loads(path.read_text())
    print(table(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
