"""GPU smoke test: a tiny random checkpoint of each family through the real engine, then encoded.

For each of Wan 2.1 I2V, Wan 2.1 FLF2V, Wan 2.2 TI2V, LTX-Video and LTX-2 (with audio): save it with
``save_pretrained``, load it with ``stillreel.engines.diffusion.create`` (from_pretrained, dtype,
attention backend, regional compile where the device is CUDA), cancel one generation at its second
step (the worker must stay usable), generate one clip with progress reports, and encode it to MP4
(PyAV). One JSON line per family goes to ``--json`` as soon as it is done, so a cut run keeps what
finished. The device is the engine's default: CUDA where there is one, else the CPU (a dry run).

    python bench/gpu_smoke.py --json out/smoke.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import numpy as np  # noqa: E402
import torch  # noqa: E402

import tiny_pipelines as tiny  # noqa: E402
from stillreel.engines.base import Cancelled, GenerationRequest, Shot  # noqa: E402

FAMILIES = (tiny.WAN21_I2V, tiny.WAN21_FLF2V, tiny.WAN22_TI2V, tiny.LTX, tiny.LTX2)


class Steps:
    """A Progress that counts step reports and cancels at the ``cancel_at``-th, like a cancelled job."""

    def __init__(self, cancel_at: int | None = None):
        self.reports: list[float] = []
        self.cancel_at = cancel_at

    def report(self, fraction: float, message: str | None = None) -> None:
        self.reports.append(fraction)
        if self.cancel_at is not None and len(self.reports) >= self.cancel_at:
            raise Cancelled()

    def log(self, message: str, level: str = "INFO") -> None:
        pass


def smoke_one(name: str, folder: Path) -> dict:
    from stillreel.engines.diffusion import create
    from stillreel.media.encode import encode
    from videocheck import probe

    started = time.perf_counter()
    path = tiny.build(name, folder)
    engine = create({"model": str(path)})  # device, dtype and compile: the engine's defaults
    loaded = time.perf_counter()
    image = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    caps = engine.capabilities
    request = GenerationRequest(start_image=image, shots=(Shot("a cat walks", 2),), seconds=2,
                                end_image=image[::-1].copy() if caps.end_frame else None, audio=caps.audio)
    cancelled = Steps(cancel_at=2)
    try:
        engine.generate(request, cancelled)
        cancel_ok = False
    except Cancelled:
        cancel_ok = len(cancelled.reports) == 2
    progress = Steps()
    clip = engine.generate(request, progress)
    info = probe(encode(clip, folder / f"{name}.mp4")["path"])
    ok = (cancel_ok and info["frames"] == clip.frame_count and progress.reports and progress.reports[-1] == 1.0
          and (info["audio"] is not None) == caps.audio)
    return {
        "family": name, "ok": bool(ok), "cancel_ok": cancel_ok, "step_reports": len(progress.reports),
        "frames": info["frames"], "width": info["width"], "height": info["height"],
        "audio": info["audio"] is not None, "speed_settings": engine.speed_settings,
        "load_seconds": round(loaded - started, 2), "seconds": round(time.perf_counter() - started, 2),
        "peak_mib": round(torch.cuda.max_memory_allocated() / 2**20) if torch.cuda.is_available() else 0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, required=True, help="one JSON object per family, one per line")
    parser.add_argument("--families", nargs="*", default=list(FAMILIES))
    args = parser.parse_args()
    failed = 0
    with tempfile.TemporaryDirectory() as folder, args.json.open("a") as out:
        for name in args.families:
            try:
                line = smoke_one(name, Path(folder))
            except Exception as exc:  # noqa: BLE001 — one family's failure must not hide the others'
                traceback.print_exc()
                line = {"family": name, "ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
            failed += not line["ok"]
            print(f"smoke {name}: {'OK' if line['ok'] else 'FAILED'} {json.dumps(line)}", flush=True)
            out.write(json.dumps(line) + "\n")
            out.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
