"""End frame: a flow-guided morph from the start image to the end image.

DIS optical flow is computed both ways, once, on the half-resolution luma planes (which is the
chroma planes' resolution, so the same flow serves them directly). Each in-between frame warps
both ends toward time t with Super-SloMo's intermediate flows (Jiang et al. 2018):
F_t→0 = −(1−t)t·F01 + t²·F10 and F_t→1 = (1−t)²·F01 − t(1−t)·F10, and blends them (1−t, t).
Frame 0 is the start image and the last frame is exactly the end image.

When the images are unrelated the flow is meaningless: its forward-backward inconsistency is then
large (≈ 50 px at 720p against < 1 px for related views), and the flow is faded out, reaching a
plain crossfade at twice the trust threshold.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from stillreel.engines.motion.geometry import new_frame, planes, smootherstep
from stillreel.media.encode import rgb_to_yuv420p

# Forward-backward error (median, px) above which the flow is not trusted, for a 1280x720 frame;
# scaled with the frame's diagonal.
FB_TRUST_PX_720P = 3.0


def _flows(y0: np.ndarray, y1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Half-resolution flows I0→I1 and I1→I0, in half-resolution pixels."""
    h, w = y0.shape
    size = (w // 2, h // 2)
    g0 = cv2.resize(y0, size, interpolation=cv2.INTER_AREA)
    g1 = cv2.resize(y1, size, interpolation=cv2.INTER_AREA)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(g0, g1, None), dis.calc(g1, g0, None)


def _grid(h: int, w: int) -> np.ndarray:
    return np.dstack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)))


def forward_backward_error(f01: np.ndarray, f10: np.ndarray) -> float:
    """Median |F01(x) + F10(x + F01(x))|: ~0 where the two flows agree."""
    h, w = f01.shape[:2]
    g = _grid(h, w)
    back = cv2.remap(f10, g + f01, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return float(np.median(np.linalg.norm(f01 + back, axis=2)))


class Morph:
    """Renders ``frames`` frames from the ``start`` still to the ``end`` still (RGB, same size,
    made on demand by the callables)."""

    def __init__(self, start: Callable[[], np.ndarray], end: Callable[[], np.ndarray], frames: int):
        self._start, self._end, self.frames = start, end, frames
        self.info: dict = {}
        self.light = False  # two remaps and a blend a frame: OpenCV's threads pay off

    def prepare(self) -> None:
        self.start, self.end = rgb_to_yuv420p(self._start()), rgb_to_yuv420p(self._end())
        y0, y1 = planes(self.start)[0], planes(self.end)[0]
        h, w = y0.shape
        f01, f10 = _flows(y0, y1)
        fb = 2.0 * forward_backward_error(f01, f10)  # in full-resolution pixels
        limit = FB_TRUST_PX_720P * float(np.hypot(w, h)) / float(np.hypot(1280, 720))
        trust = 1.0 if fb <= limit else max(0.0, 1.0 - (fb - limit) / limit)
        self.info = {
            "end_frame": "optical-flow morph" if trust == 1 else "crossfade (unrelated images)" if trust == 0
            else "optical-flow morph, partly faded to a crossfade",
            "flow_fb_error_px": round(fb, 3),
            "flow_trust": round(trust, 3),
        }
        self.trust = trust
        f01 *= trust
        f10 *= trust
        # Chroma planes use the half-resolution flow as is; luma gets it upsampled and doubled.
        self.flows = (
            (2 * cv2.resize(f01, (w, h), interpolation=cv2.INTER_LINEAR),
             2 * cv2.resize(f10, (w, h), interpolation=cv2.INTER_LINEAR)),
            (f01, f10),
            (f01, f10),
        )
        self.grids = (_grid(h, w), _grid(h // 2, w // 2))

    def render(self, i: int) -> np.ndarray:
        if i == 0:
            return self.start.copy()
        if i == self.frames - 1:
            return self.end.copy()
        t = smootherstep(i / (self.frames - 1))
        h, w = self.start.shape[0] * 2 // 3, self.start.shape[1]
        out = new_frame(w, h)
        for k, (p0, p1, dst) in enumerate(zip(planes(self.start), planes(self.end), planes(out))):
            f01, f10 = self.flows[k]
            grid = self.grids[min(k, 1)]
            if self.trust == 0.0:
                cv2.addWeighted(p0, 1 - t, p1, t, 0, dst=dst)
                continue
            m0 = cv2.scaleAdd(f10, t * t, cv2.scaleAdd(f01, -(1 - t) * t, grid))
            m1 = cv2.scaleAdd(f10, -t * (1 - t), cv2.scaleAdd(f01, (1 - t) ** 2, grid))
            w0 = cv2.remap(p0, m0, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            w1 = cv2.remap(p1, m1, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            cv2.addWeighted(w0, 1 - t, w1, t, 0, dst=dst)
        return out
