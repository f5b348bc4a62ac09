"""Multi-shot framing: which part of the still each shot shows.

Shot 1 always shows the whole (cover-cropped) input, so the video starts on it. Later shots take
their framing from words in their prompt ("close-up", "medium shot", "wide shot"), else cycle
medium → close → wide, and centre it on one of the image's most detailed areas (peaks of blurred
gradient energy: a cheap, deterministic stand-in for "the subject"). Each framed still is cut
from the *input* at its own resolution, so close-ups of a large photo stay sharp.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import cv2
import numpy as np

from stillreel.engines.motion.geometry import Cover

# Share of the frame's width (and height) a framing shows.
FRAMINGS = {"wide": 1.0, "medium": 0.72, "close": 0.5}
DEFAULT_CYCLE = ("medium", "close", "wide")

_WORDS = [
    ("close", re.compile(r"\b(?:extreme\s+)?close[- ]?ups?\b|\bclose\s+shot\b|\bdetail\s+shot\b|\bmacro\b", re.I)),
    ("medium", re.compile(r"\bmedium(?:[- ]close)?\s+shot\b|\bmid[- ]shot\b|\bwaist[- ]up\b", re.I)),
    ("wide", re.compile(r"\b(?:wide|establishing|full|long)\s+shot\b|\bwide[- ]angle\b", re.I)),
]


def framing_from_prompt(prompt: str) -> str | None:
    hits = [(m.start(), name) for name, rx in _WORDS if (m := rx.search(prompt or ""))]
    return min(hits)[1] if hits else None


def focus_points(rgb: np.ndarray, count: int = 3) -> list[tuple[float, float]]:
    """Up to ``count`` centres of detail (x, y) in ``rgb``'s pixels, strongest first, spread apart."""
    h, w = rgb.shape[:2]
    scale = 256 / max(h, w)
    small = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (max(1, round(w * scale)), max(1, round(h * scale))),
                       interpolation=cv2.INTER_AREA).astype(np.float32)
    energy = cv2.magnitude(cv2.Sobel(small, cv2.CV_32F, 1, 0), cv2.Sobel(small, cv2.CV_32F, 0, 1))
    energy = cv2.GaussianBlur(energy, (0, 0), max(small.shape) / 16)
    points = []
    radius = max(small.shape) // 4
    for _ in range(count):
        _, peak, _, (x, y) = cv2.minMaxLoc(energy)
        if peak <= 0:
            break
        points.append(((x + 0.5) / scale, (y + 0.5) / scale))
        cv2.circle(energy, (x, y), radius, 0, -1)
    return points or [(w / 2, h / 2)]


def framed_still(image: np.ndarray | Callable[[], np.ndarray], cover: Cover, share: float,
                 focus: tuple[float, float] | Callable[[], tuple[float, float]]) -> Callable[[], np.ndarray]:
    """A callable making the output-size still that shows ``share`` of the frame around ``focus``
    (output pixels), cut from the original ``image``. Either may be a callable, evaluated only when
    the still is made (on the render thread)."""
    W, H = cover.out_w, cover.out_h

    def make() -> np.ndarray:
        nonlocal image, focus
        image = image() if callable(image) else image
        if share >= 1.0:
            return cover.image(image)
        focus = focus() if callable(focus) else focus
        cw, ch = W * share, H * share
        x = float(np.clip(focus[0] - cw / 2, 0, W - cw))
        y = float(np.clip(focus[1] - ch / 2, 0, H - ch))
        ix, iy, iw, ih = cover.input_rect(x, y, cw, ch)
        x0, y0 = max(0, round(ix)), max(0, round(iy))
        x1, y1 = min(image.shape[1], round(ix + iw)), min(image.shape[0], round(iy + ih))
        crop = image[y0:y1, x0:x1]
        interp = cv2.INTER_AREA if crop.shape[1] > W else cv2.INTER_CUBIC
        return cv2.resize(crop, (W, H), interpolation=interp)

    return make


_SPLIT = re.compile(r"(?<=[.!?;])\s+|,?\s+\bthen\b\s+", re.I)


def split_prompt(prompt: str, seconds: int, max_shots: int = 6) -> list[tuple[str, int]]:
    """``shot_type: intelligent``: the prompt's sentences (or "then" clauses; else its commas) as
    shots, at most ``max_shots`` and at most one per second, with whole-second durations adding up
    to ``seconds`` (earlier shots get the remainder). Deterministic."""
    parts = [re.sub(r"^then\b\s*", "", p.strip(" ,."), flags=re.I) for p in _SPLIT.split(prompt or "")]
    parts = [p for p in parts if p]
    if len(parts) < 2:
        parts = [p.strip() for p in (prompt or "").split(",") if p.strip()] or [prompt or ""]
    count = max(1, min(len(parts), max_shots, seconds))
    if len(parts) > count:  # fold the tail into the last shot
        parts = parts[: count - 1] + [", ".join(parts[count - 1 :])]
    base, extra = divmod(seconds, count)
    return [(text, base + (1 if k < extra else 0)) for k, text in enumerate(parts)]
