"""From a request to pipeline calls: sizes, frame counts, segments and guidance. Pure functions.

- Aspect ratio → the family's resolution bucket: the landscape bucket as is, portrait swapped,
  square at the same pixel area; no aspect → the bucket closest to the input's orientation.
- Duration → frames on the model's quantum at its fps: ``quantum * round(seconds * fps / quantum) + 1``.
- Shots longer than the family's ``max_seconds`` become consecutive segments. Every shot or
  segment after the first starts from the previous one's last frame, which it reproduces as its
  own first frame; that duplicate is dropped, so a clip of ``s`` seconds has
  ``1 + Σ quantum * round(s_i * fps / quantum)`` frames — 81 for 5 s at 16 fps however it is cut.
- cfg_scale (0..1) → guidance: ``1 + 2 * cfg * (recommended - 1)``: 0 turns guidance off,
  0.5 is the model card's value, 1 is twice as far from "off".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image as PILImage

from stillreel.engines.base import Aspect, Shot


@dataclass(frozen=True)
class Segment:
    shot: int  # index of the shot it belongs to
    prompt: str
    seconds: int
    frames: int  # frames this pipeline call makes (the first is dropped when it continues a clip)


def bucket(
    resolution: tuple[int, int], multiple: int, aspect: Aspect | None, image_size: tuple[int, int]
) -> tuple[int, int]:
    """(width, height) for ``aspect``; ``image_size`` is the input's (width, height), used when aspect is None."""
    width, height = resolution
    buckets = {
        Aspect.LANDSCAPE: (width, height),
        Aspect.PORTRAIT: (height, width),
        Aspect.SQUARE: (_round_to(math.sqrt(width * height), multiple),) * 2,
    }
    if aspect is None:
        ratio = image_size[0] / max(1, image_size[1])
        aspect = min(buckets, key=lambda a: abs(math.log(ratio * buckets[a][1] / buckets[a][0])))
    w, h = buckets[Aspect(aspect)]
    return _round_to(w, multiple), _round_to(h, multiple)


def _round_to(value: float, multiple: int) -> int:
    return max(multiple, int(round(value / multiple)) * multiple)


def frame_count(seconds: float, fps: int, quantum: int) -> int:
    """Frames for ``seconds`` at ``fps`` on the model's temporal quantum (``quantum * k + 1``)."""
    return quantum * max(1, round(seconds * fps / quantum)) + 1


def split_seconds(seconds: int, max_seconds: int) -> list[int]:
    """Near-equal whole-second parts of at most ``max_seconds`` each (7 with max 5 → [4, 3])."""
    parts = max(1, math.ceil(seconds / max_seconds))
    base, extra = divmod(seconds, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def segments(shots: tuple[Shot, ...], fps: int, quantum: int, max_seconds: int) -> list[Segment]:
    out = []
    for index, shot in enumerate(shots):
        for seconds in split_seconds(max(1, shot.seconds), max_seconds):
            out.append(Segment(index, shot.prompt, seconds, frame_count(seconds, fps, quantum)))
    return out


def total_frames(calls: list[Segment]) -> int:
    return calls[0].frames + sum(s.frames - 1 for s in calls[1:])


def guidance_scale(cfg: float, recommended: float) -> float:
    """fal's cfg_scale (0..1) → the model's guidance scale; ≤ 1 means classifier-free guidance off."""
    cfg = min(1.0, max(0.0, float(cfg)))
    return 1.0 + 2.0 * cfg * (recommended - 1.0)


def fit(image: np.ndarray, size: tuple[int, int]) -> PILImage.Image:
    """Center-crop ``image`` (RGB uint8) to the aspect of ``size`` and resize it to ``size`` (w, h)."""
    width, height = size
    pil = PILImage.fromarray(np.ascontiguousarray(image[..., :3]), "RGB")
    src_w, src_h = pil.size
    target = width / height
    if src_w / src_h > target:  # too wide: crop the sides
        crop_w = round(src_h * target)
        left = (src_w - crop_w) // 2
        pil = pil.crop((left, 0, left + crop_w, src_h))
    else:  # too tall: crop top and bottom
        crop_h = round(src_w / target)
        top = (src_h - crop_h) // 2
        pil = pil.crop((0, top, src_w, top + crop_h))
    return pil.resize((width, height), PILImage.Resampling.LANCZOS)
