#!/usr/bin/env bash
# Wheels the GPU machine lacks, for its Python 3.12 (x86-64), into .whl/ (git-ignored) — carried there
# with the device tool's `carry: [".whl"]` and installed by bench/gpu.sh.
#
# That machine has torch 2.11 (CUDA 13), transformers 5.17, huggingface_hub 1.33, accelerate,
# safetensors 0.8, numpy, pillow, regex, requests, filelock, tokenizers, sentencepiece, opencv;
# stillreel's engine path (stillreel.engines.diffusion + stillreel.media.encode) imports beyond those
# only diffusers and av (PyAV). diffusers 0.42.1 needs huggingface-hub>=1.32 and safetensors>=0.8,
# which the machine meets, and importlib_metadata, which it lacks. PyAV's manylinux wheel bundles
# FFmpeg + x264 (~34 MiB, the bulk of the carry); it is the slimmest build that encodes H.264 — there
# is no smaller variant on PyPI. Versions are the ones the CPU test venv runs.
#
#   scripts/gpu-wheels.sh          # or: make gpu-wheels
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=/work/main/.venv/bin/python
[ -x "$PYTHON" ] || PYTHON=python3
LIMIT_MIB=${LIMIT_MIB:-60}   # the device tool carries 64 MiB in all, the working tree included
WHEELS=(diffusers==0.42.1 av==18.1.0 importlib_metadata==10.2.0 zipp==4.1.2)

rm -rf .whl && mkdir -p .whl
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl "${WHEELS[@]}"
# stillreel itself (pure Python; the run also works from the carried tree, this pins what was carried)
"$PYTHON" -m pip wheel -q --no-deps --no-build-isolation -w .whl . >/dev/null
rm -rf build stillreel.egg-info

ls -l .whl/*.whl | awk '{printf "%8.1f MiB  %s\n", $5 / 1048576, $9}'
total=$(du -cb .whl/*.whl | tail -1 | cut -f1)
tree=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
printf 'wheels: %.1f MiB; with the tracked tree: %.1f MiB (limit %s MiB)\n' \
  "$(echo "$total / 1048576" | bc -l)" "$(echo "($total + $tree) / 1048576" | bc -l)" "$LIMIT_MIB"
if [ $(( (total + tree) / 1048576 )) -ge "$LIMIT_MIB" ]; then
  echo "gpu-wheels: over the carry limit" >&2; exit 1
fi
