#!/usr/bin/env bash
# The diffusion engine's GPU proof in one time-boxed run: install the carried wheels, smoke-test every
# family through the real engine, time Wan2.2-TI2V-5B (full-size, random weights) plain vs stillreel.
#
#   bench/gpu.sh OUT_DIR          # on the GPU machine (wheels from scripts/gpu-wheels.sh in .whl/)
#   bench/gpu.sh OUT_DIR --tiny   # dry run of the same path on tiny models (CPU here), < 2 minutes
#
# Writes OUT_DIR/gpu.log (everything printed) and OUT_DIR/gpu.json (versions, smoke lines, speed lines
# with `speedup` over plain). Stages and their budgets on an H200 (GPU_BUDGET_S, default 480 s, is the
# global deadline; each stage gets at most what is left, so a slow stage is cut, not the whole run):
#   install  ~15 s    pip --no-index --target a private site dir
#   smoke    ~90 s    5 tiny families, regional compile on CUDA (capped at SMOKE_S=170)
#   speed    ~300 s   build 5B + UMT5-XXL on the GPU ~40 s; per line (STEPS timed steps + VAE decode):
#                     plain ~45 s, lossless ~90 s with its compile warm-up (1 step, no decode), distilled ~40 s, cache ~80 s
#   report   ~2 s     gpu.json + the BENCHMARKS.md table (bench/gpu_report.py)
set -uo pipefail
OUT=${1:?usage: bench/gpu.sh OUT_DIR [--tiny]}
TINY=${2:-}
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PY=${PYTHON:-python3}
WHEELS=${GPU_WHEELS:-.whl}
SITE=${GPU_SITE:-/tmp/stillreel-gpu-site}
STEPS=${STEPS:-3}
BUDGET=${GPU_BUDGET_S:-480}
[ "$TINY" = --tiny ] && BUDGET=${GPU_BUDGET_S:-170} && STEPS=2
DEADLINE=$(( $(date +%s) + BUDGET ))
left() { echo $(( DEADLINE - $(date +%s) )); }
cap() { local l; l=$(left); [ "$1" -lt "$l" ] && echo "$1" || echo "$l"; }
exec > >(tee "$OUT/gpu.log") 2>&1
TEE=$!
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
echo "== gpu.sh $(date -u +%FT%TZ) budget ${BUDGET}s, ${STEPS} timed steps ${TINY}"
: >"$OUT/stages.txt"
stage() { echo "$1 $2 $3" >>"$OUT/stages.txt"; }   # name, exit status, seconds

# 1. the carried wheels, in a private site dir first on the path (the machine's own packages stay)
t=$(date +%s)
if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  rm -rf "$SITE"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "$WHEELS"/*.whl
  rc=$?; export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
else
  echo "no wheels in $WHEELS: running with this environment's packages"; rc=0
fi
"$PY" - "$OUT/versions.json" <<'PY' || rc=1
import importlib, json, platform, sys
import torch
v = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
     "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
for name in ("diffusers", "transformers", "accelerate", "huggingface_hub", "safetensors", "av", "numpy", "stillreel"):
    module = importlib.import_module(name)
    v[name] = getattr(module, "__version__", "?")
    print(f"{name:16s} {v[name]:14s} {module.__file__}")
print("python", v["python"], "| torch", v["torch"], "| CUDA", v["cuda"], "| GPU", v["gpu"])
json.dump(v, open(sys.argv[1], "w"))
PY
stage install $rc $(( $(date +%s) - t ))
[ $rc -eq 0 ] || { echo "install failed: nothing else can run"; }

# 2. smoke: every family through the real engine
if [ $rc -eq 0 ]; then
  t=$(date +%s); rm -f "$OUT/smoke.jsonl"
  timeout -k 5 "$(cap "${SMOKE_S:-170}")" "$PY" bench/gpu_smoke.py --json "$OUT/smoke.jsonl"
  stage smoke $? $(( $(date +%s) - t ))
fi

# 3. speed: what is left of the budget, less the report's margin; lines are saved as they finish
if [ $rc -eq 0 ] && [ "$(left)" -gt 20 ]; then
  t=$(date +%s)
  timeout -k 5 $(( $(left) - 10 )) "$PY" bench/diffusion.py --model wan2.2-ti2v-5b --steps "$STEPS" \
    --cache first_block --no-smoke --json "$OUT/speed.json" $TINY
  stage speed $? $(( $(date +%s) - t ))
else
  stage speed skipped 0
fi

# 4. one JSON, and the table for BENCHMARKS.md; the exit status says whether every stage finished
"$PY" bench/gpu_report.py collect "$OUT"
status=$?
awk '$2 != "0" { bad = 1 } END { exit bad }' "$OUT/stages.txt" || status=1
exec >&- 2>&-
wait "$TEE" 2>/dev/null || sleep 1  # let tee write the log's last lines before $OUT is collected
exit $status
