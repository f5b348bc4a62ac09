"""bench/gpu.sh --tiny: the GPU proof's own code path, run end to end on this machine's CPU.

The script installs the carried wheels from .whl/ when scripts/gpu-wheels.sh has fetched them (the
same pip --no-index --target step the GPU machine runs), else runs on this environment's packages;
then smoke-tests every family through the real engine and times the speed lines on tiny pipelines.
Only the shape and the invariants of its JSON are checked — timings are not asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[dict, str]:
    tmp = tmp_path_factory.mktemp("gpu")
    env = {**os.environ, "PYTHON": sys.executable, "GPU_SITE": str(tmp / "site")}
    if not any((REPO / ".whl").glob("*.whl")):
        env["GPU_WHEELS"] = str(tmp / "no-wheels")
    result = subprocess.run(["bash", "bench/gpu.sh", str(tmp / "out"), "--tiny"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads((tmp / "out" / "gpu.json").read_text()), (tmp / "out" / "gpu.log").read_text()


def test_every_stage_finishes_and_the_log_holds_the_versions(run):
    doc, log = run
    assert doc["schema"] == "stillreel-gpu-bench/1" and doc["tiny"] is True
    assert {name: s["status"] for name, s in doc["stages"].items()} == {"install": 0, "smoke": 0, "speed": 0}
    for name in ("torch", "diffusers", "transformers", "av", "stillreel", "python"):
        assert doc["versions"][name], name
        assert f"{name}" in log
    assert "gpu" in doc  # the GPU's name; None on a CPU dry run


def test_smoke_covers_every_family_with_cancel_progress_and_encoding(run):
    doc, _ = run
    smoke = {line["family"]: line for line in doc["smoke"]}
    assert set(smoke) == {"wan2.1-i2v", "wan2.1-flf2v", "wan2.2-ti2v-5b", "ltx-video", "ltx-2"}
    for name, line in smoke.items():
        assert line["ok"] and line["cancel_ok"], line
        assert line["frames"] > 1 and line["step_reports"] >= 2
        assert line["speed_settings"]["attention"]
    assert smoke["ltx-2"]["audio"] and not smoke["wan2.1-i2v"]["audio"]


def test_speed_lines_have_speedups_over_plain_and_lossless_matches_plain(run):
    doc, _ = run
    fig = doc["speed"]["wan2.2-ti2v-5b"]
    labels = [line["label"] for line in fig["lines"]]
    assert labels[0] == "plain diffusers" and labels[1] == "stillreel lossless"
    assert any("distilled" in x for x in labels) and any("cache" in x for x in labels)
    plain, lossless = fig["lines"][0], fig["lines"][1]
    assert plain["speedup"] == 1.0
    for line in fig["lines"]:
        assert line["projected_seconds"] > 0 and line["speedup"] > 0
        # projected_seconds are rounded to 0.01 s and the speedup is not: on the CPU's tiny timings
        # the rounding alone moves the ratio, so compare within what it allows.
        p, q = plain["projected_seconds"], line["projected_seconds"]
        low, high = (p - 0.005) / (q + 0.005), (p + 0.005) / max(q - 0.005, 1e-9)
        assert low * 0.95 <= line["speedup"] <= high * 1.05
    # Same steps, guidance, seed and weights: on the CPU (float32, no compile) the engine's output is plain's.
    assert lossless["diff_vs_plain_max"] <= 1


def test_the_report_renders_a_benchmarks_table(run, tmp_path):
    doc, _ = run
    path = tmp_path / "gpu.json"
    path.write_text(json.dumps(doc))
    out = subprocess.run([sys.executable, "bench/gpu_report.py", "table", str(path)], cwd=REPO,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert "| stillreel lossless | 50 |" in out and "Smoke: 5/5 families OK" in out


def test_a_failing_stillreel_line_is_recorded_and_plain_is_kept(tmp_path):
    # An attention backend that cannot be used fails the lossless line (as a compile or kernel error
    # on a GPU would): the JSON still holds the plain line and names the failure.
    out = tmp_path / "speed.json"
    result = subprocess.run([sys.executable, "bench/diffusion.py", "--tiny", "--device", "cpu", "--model",
                             "wan2.2-ti2v-5b", "--steps", "1", "--attention", "no-such-backend", "--json", str(out)],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    fig = json.loads(out.read_text())["results"]["wan2.2-ti2v-5b"]
    assert [line["label"] for line in fig["lines"]] == ["plain diffusers"]
    assert fig["errors"][0]["label"] == "stillreel lossless" and "attention" in fig["errors"][0]["error"]


def test_the_full_size_benchmark_model_keeps_the_card_fp32_modules():
    # Built on the meta device (no memory, no time): the published Wan2.2-TI2V-5B architecture, bf16
    # except the modules diffusers' from_pretrained keeps in float32, as the model card loads it.
    import torch

    sys.path.insert(0, str(REPO / "bench"))
    import diffusion

    pipe, family = diffusion.full_pipeline("wan2.2-ti2v-5b", "meta")
    assert family == "wan2.2-ti2v-5b"
    transformer = pipe.transformer
    assert 4.9e9 < sum(p.numel() for p in transformer.parameters()) < 5.1e9
    dtypes = {name: p.dtype for name, p in transformer.named_parameters()}
    assert dtypes["blocks.0.attn1.to_q.weight"] == torch.bfloat16
    assert dtypes["blocks.0.scale_shift_table"] == torch.float32
    assert all(d == torch.float32 for n, d in dtypes.items() if n.startswith("condition_embedder.time_embedder."))
    assert next(pipe.vae.parameters()).dtype == torch.float32
    assert (pipe.vae_scale_factor_spatial, pipe.vae_scale_factor_temporal) == (16, 4)
