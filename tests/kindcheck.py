"""Checks on a finished video of any kind (text-, image-, reference-to-video, elements): container
facts decoded with PyAV, and whether given pictures are visibly shown in it.

Shared by the engine tests (tests/test_motion_kinds.py) and the end-to-end client tests (Python's
fal-client, and @fal-ai/client through tests/test_fal_client_js.py).
"""

from __future__ import annotations

import io
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import Image

from videocheck import fractal_image

# Kling's sizes per (tier, aspect): standard and pro are the 720p class, 4k three times the sides.
SIZES = {"16:9": (1280, 720), "9:16": (720, 1280), "1:1": (960, 960)}


def picture_png(seed: int, width: int = 400, height: int = 300) -> bytes:
    """A distinct, richly textured picture (no two seeds correlate), as PNG bytes."""
    out = io.BytesIO()
    Image.fromarray(fractal_image(width, height, seed)).save(out, "PNG")
    return out.getvalue()


def rgb_of(png: bytes | str | Path) -> np.ndarray:
    data = Path(png).read_bytes() if isinstance(png, (str, Path)) else png
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def cover_crop(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale to cover, centre-crop (written here independently of the engine's Cover)."""
    h, w = img.shape[:2]
    s = max(width / w, height / h)
    rw, rh = max(width, round(w * s)), max(height, round(h * s))
    big = cv2.resize(img, (rw, rh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    x0, y0 = (rw - width) // 2, (rh - height) // 2
    return big[y0:y0 + height, x0:x0 + width]


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of the two images' grey levels at 64 px wide (robust to codec noise)."""
    def small(img):
        grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
        return cv2.resize(grey, (64, round(64 * img.shape[0] / img.shape[1])), interpolation=cv2.INTER_AREA).ravel()

    x, y = small(a), small(b)
    x, y = x - x.mean(), y - y.mean()
    return float((x @ y) / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-9))


def scores(frames: list[np.ndarray], image: np.ndarray) -> list[float]:
    h, w = frames[0].shape[:2]
    target = cover_crop(image, w, h)
    return [correlation(f, target) for f in frames]


def best_match(frames: list[np.ndarray], image: np.ndarray) -> tuple[float, int]:
    """(highest correlation of any frame with ``image`` cover-cropped to the frame size, that frame)."""
    s = scores(frames, image)
    return max(s), int(np.argmax(s))


def decoded(path: Path | str) -> tuple[dict, list[np.ndarray]]:
    """(facts, every frame as RGB) of an MP4: size, fps, frame count, durations, audio codec or None."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        a = c.streams.audio[0] if c.streams.audio else None
        facts = {"codec": v.codec_context.name, "width": v.codec_context.width, "height": v.codec_context.height,
                 "fps": float(v.average_rate), "duration": float(v.duration * v.time_base),
                 "audio": None if a is None else a.codec_context.name,
                 "audio_duration": None if a is None else float(a.duration * a.time_base)}
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    facts["frames"] = len(frames)
    return facts, frames


def check_kind_video(path: Path | str, *, aspect: str, seconds: int, audio: bool, shows=(), starts_on=None,
                     unrelated=None, tier: str = "standard") -> dict:
    """Assert what a Kling clip of any kind must be: Kling's size for (tier, aspect), exactly
    seconds × 24 frames at 24 fps, an AAC track exactly when ``audio``, every picture of ``shows``
    (RGB arrays) visibly on screen for a stretch of frames, frame 0 on ``starts_on``, and (the
    control) ``unrelated`` nowhere. Returns the facts."""
    facts, frames = decoded(path)
    w, h = SIZES[aspect]
    if tier == "4k":
        w, h = w * 3, h * 3
    assert facts["codec"] == "h264" and (facts["width"], facts["height"]) == (w, h), facts
    assert facts["fps"] == 24.0 and facts["frames"] == seconds * 24, facts
    assert abs(facts["duration"] - seconds) < 0.05, facts
    if audio:
        assert facts["audio"] == "aac" and abs(facts["audio_duration"] - seconds) < 0.05, facts
    else:
        assert facts["audio"] is None, facts
    for k, picture in enumerate(shows):
        s = scores(frames, picture)
        assert sum(v > 0.9 for v in s) >= 4, f"picture {k} is not shown (best correlation {max(s):.3f})"
    if starts_on is not None:
        assert correlation(frames[0], cover_crop(starts_on, w, h)) > 0.95
    if unrelated is not None:
        assert best_match(frames, unrelated)[0] < 0.5
    return facts
