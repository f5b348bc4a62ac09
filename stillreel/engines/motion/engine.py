"""The motion engine: ``generate`` validates and plans, then frames render lazily on a thread.

``generate`` returns at once with a ``Clip`` whose frame iterator starts a render thread on first
use. The thread renders frame k+1.. while the consumer (the encoder, whose x264 runs its own
threads) works on frame k, so synthesis and encoding overlap on both cores. A small bounded
queue keeps memory flat whatever the duration. The consumer reports progress per frame; when the
job is cancelled ``report`` raises ``Cancelled``, the iterator stops the thread and lets it
propagate, so rendering stops within a frame.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Iterator

import cv2
import numpy as np

from stillreel.engines.base import Capabilities, Clip, EngineError, GenerationRequest, Progress
from stillreel.engines.motion.render_plan import ENGINE, RenderPlan, build_plan

CAPABILITIES = Capabilities(
    end_frame=True,
    motion_brush=True,
    camera=True,
    advanced_camera=True,  # fal's advanced_camera_control: one axis, as Kling defines them (camera.advanced_move)
    multi_shot=True,
    audio=True,  # a procedural ambience that follows the motion (sound.py), not generative
    negative_prompt=True,  # accepted and ignored (documented): nothing is generated
    intelligent_shots=True,  # the prompt split into shots (shots.split_prompt)
    voices=True,  # noted in the logs; nothing is spoken
    aspect_ratio=True,
    text_to_video=True,  # a procedural start frame (procedural.py), not generated from the prompt
    reference_images=True,  # each shown in turn, cover-cropped (stills.py), not composed into a scene
    elements=True,  # their frontal and reference images, shown like reference images
    element_video=True,  # an element given as a video: its first frame, shown like its images
)

_DONE = object()


_light_lock = threading.Lock()  # cv2.setNumThreads is process-wide: renders in one process share it
_light_renders = 0
_threads_before = 0


def light_render_threads() -> int:
    """A quarter of the cores this process may use (at least one), never more than OpenCV's own
    default (which follows a container's CPU quota)."""
    return max(1, min(cv2.getNumThreads(), len(os.sched_getaffinity(0)) // 4))


@contextlib.contextmanager
def opencv_threads(renderer):
    """A light renderer (a camera move: a warp a frame) runs on one OpenCV thread, a quarter of
    the cores on larger machines: x264's frame threads already use every core, and OpenCV's pool,
    sized to every core as well, only added hand-offs (a 720p zoom's 120 frames: 75 ms of CPU on
    OpenCV's 2 threads, 52 ms on one, while x264 encoded on 2 cores). Heavy renderers (morph,
    motion brush) keep OpenCV's threads: one thread made them 10-15 % slower. The setting is the
    process's: while light renders overlap (one process rendering several clips at once), it
    stays lowered until the last one ends."""
    global _light_renders, _threads_before
    if not getattr(renderer, "light", False):
        yield
        return
    with _light_lock:
        if _light_renders == 0:
            _threads_before = cv2.getNumThreads()
            cv2.setNumThreads(light_render_threads())
        _light_renders += 1
    try:
        yield
    finally:
        with _light_lock:
            _light_renders -= 1
            if _light_renders == 0:
                cv2.setNumThreads(_threads_before)


class MotionEngine:
    """Options: ``size_scale`` (0.1–1, default 1): render at that fraction of Kling's sizes, for
    faster, smaller previews; ``queue_frames`` (default 4): frames rendered ahead of the encoder."""

    name = ENGINE
    capabilities = CAPABILITIES

    def __init__(self, size_scale: float = 1.0, queue_frames: int = 4):
        size_scale = float(size_scale)
        if not 0.1 <= size_scale <= 1.0:
            raise ValueError(f"size_scale must be between 0.1 and 1, got {size_scale}")
        self.size_scale = size_scale
        self.queue_frames = max(1, int(queue_frames))

    def generate(self, request: GenerationRequest, progress: Progress) -> Clip:
        plan = build_plan(request, self.size_scale)
        for note in plan.notes:
            progress.log(note)
        return Clip(
            fps=plan.fps,
            width=plan.width,
            height=plan.height,
            frame_count=plan.frames,
            frames=self._frames(plan, progress),
            pix_fmt="yuv420p",
            audio=plan.audio,
            info=plan.info,
        )

    def _frames(self, plan: RenderPlan, progress: Progress) -> Iterator[np.ndarray]:
        n = plan.frames
        ready: queue.Queue = queue.Queue(maxsize=self.queue_frames)
        stop = threading.Event()

        def put(item) -> bool:
            while not stop.is_set():
                try:
                    ready.put(item, timeout=0.05)
                    return True
                except queue.Full:
                    continue
            return False

        def render() -> None:
            try:
                with opencv_threads(plan.renderer):
                    plan.renderer.prepare()
                    plan.info.update(plan.renderer.info)
                    for i in range(n):
                        if stop.is_set() or not put(plan.renderer.render(i)):
                            return
                put(_DONE)
            except BaseException as exc:  # handed to the consumer, which re-raises it
                put(exc)

        thread = threading.Thread(target=render, name="motion-render", daemon=True)
        thread.start()
        step = max(1, round(n / 10))
        try:
            for k in range(1, n + 1):
                item = ready.get()
                if item is _DONE:
                    raise EngineError(f"the renderer stopped after {k - 1} of {n} frames", "internal_error",
                                      status=500)
                if isinstance(item, BaseException):
                    raise item
                message = f"rendering frame {k}/{n}" if k % step == 0 or k == n else None
                progress.report(k / n, message)
                yield item
        finally:
            stop.set()
            thread.join()


OPTIONS = ("size_scale", "queue_frames")


def create(options: dict | None = None) -> MotionEngine:
    options = dict(options or {})
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown motion engine option(s) {', '.join(unknown)}: it takes "
                         f"{' and '.join(OPTIONS)} (it uses no model)")
    return MotionEngine(**options)
