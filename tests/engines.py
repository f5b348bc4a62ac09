"""Engines for queue tests only (never shipped): fast, tiny, and controllable from the prompt.

The prompt steers the test engine, so one server can exercise every path:
``frames=N`` (default 12), ``delay=S`` per frame (default 0.02), ``ignore-cancel`` (keeps going after
a cancel: the worker must kill it), ``crash`` (the process dies mid-generation), ``fail`` (raises).
"""

from __future__ import annotations

import os
import re
import time

import numpy as np

from stillreel.engines.base import Capabilities, Clip, EngineError, GenerationRequest, Progress


class StepEngine:
    name = "test-step"
    capabilities = Capabilities(end_frame=True, motion_brush=True, camera=True, multi_shot=True,
                                audio=False, negative_prompt=True)

    def __init__(self, **options):
        self.options = options

    def generate(self, request: GenerationRequest, progress: Progress) -> Clip:
        prompt = request.prompt
        frames = int(_arg(prompt, "frames", 12))
        delay = float(_arg(prompt, "delay", 0.02))
        if "fail" in prompt.split():
            raise EngineError("the test engine was asked to fail", "value_error", ("prompt",))
        h, w = 64, 96
        base = np.asarray(
            np.resize(request.start_image, (h, w, 3)) if request.start_image.size else np.zeros((h, w, 3)),
            dtype=np.uint8,
        )

        def frames_iter():
            for k in range(frames):
                if "ignore-cancel" in prompt:
                    if not progress.cancelled:
                        _report(progress, k, frames)
                else:
                    _report(progress, k, frames)
                if "crash" in prompt.split() and k == frames // 2:
                    os._exit(17)
                time.sleep(delay)
                frame = np.roll(base, k * 2, axis=1)
                yield frame
            progress.report(1.0, "test engine done")

        return Clip(fps=24, width=w, height=h, frame_count=frames, frames=frames_iter(),
                    info={"engine": "test-step"})


def _report(progress: Progress, k: int, n: int) -> None:
    progress.report(k / n, f"test frame {k}/{n}" if k % 4 == 0 else None)


def _arg(prompt: str, name: str, default):
    m = re.search(rf"\b{name}=([0-9.]+)", prompt)
    return m.group(1) if m else default
