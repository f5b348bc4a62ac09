"""The pictures a clip is made of: the start image (or a procedural one), reference images, elements.

A ``Still`` is one picture with its cover-crop to the output size, made on demand on the render
thread (decoded arrays stay as given; the procedural frame is drawn once and kept). Reference
images and elements are approximated the only way a non-generative engine can: each picture is
*shown* (cover-cropped, whole) for a stretch of the clip, in the order the prompt names them
(``@Image2 … @Element1``), then the ones it does not name, in the given order (elements, each as
its frontal image then its extra views, then reference images). An element given as a video is
shown as that video's first frame (the video itself is not played).

``allot`` spreads the stills over the shots; a shot showing several stills cross-dissolves through
them (``scene.Dissolve``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from stillreel.engines.base import GenerationRequest
from stillreel.engines.motion.geometry import Cover
from stillreel.engines.motion.procedural import start_frame
from stillreel.engines.motion.shots import focus_points

# A still is shown for at least this many frames (a quarter second at 24 fps); with more pictures
# than that allows, elements' extra views are left out first (and the logs say so).
MIN_FRAMES_PER_STILL = 6
# Cross-dissolves between stills in one shot last at most this many frames (half a second).
MAX_FADE = 12

_TOKEN = re.compile(r"@(Image|Element)(\d+)", re.IGNORECASE)


@dataclass(eq=False)
class Still:
    label: str  # for the logs: "start image", "@Image2", "@Element1 (frontal)", "@Element1 view 2" …
    source: Callable[[], np.ndarray]  # the picture at its own size (RGB)
    cover: Cover
    kind: str = "reference"  # "start", "procedural" or "reference"
    _focus: list | None = field(default=None, repr=False)

    def original(self) -> np.ndarray:
        return self.source()

    def whole(self) -> np.ndarray:
        """The picture cover-cropped to the output size."""
        return self.cover.image(self.source())

    def focus(self) -> list[tuple[float, float]]:
        if self._focus is None:
            self._focus = focus_points(self.whole())
        return self._focus


def given(image: np.ndarray) -> Callable[[], np.ndarray]:
    return lambda: image


def procedural(prompt: str, seed: int, width: int, height: int) -> Callable[[], np.ndarray]:
    """The text-to-video start frame, drawn once (on first use, on the render thread)."""
    made: list[np.ndarray] = []

    def make() -> np.ndarray:
        if not made:
            made.append(start_frame(prompt, seed, width, height))
        return made[0]

    return make


@dataclass(frozen=True, eq=False)  # compared by identity (arrays have no truth value)
class Picture:
    """A reference picture before its crop is checked: where it came from and how to name it."""

    image: np.ndarray
    label: str
    loc: tuple  # the normalized request's attribute, for errors
    primary: bool  # False: an element's extra view (left out first when there are too many)


def references(request: GenerationRequest) -> list[Picture]:
    """The reference images and element images in showing order (prompt mentions first)."""
    groups: dict[tuple[str, int], list[Picture]] = {}
    for i, element in enumerate(request.elements):
        name = f"@Element{i + 1}"
        video = element.video_frame
        if video is not None and video is element.frontal:  # given as a video only
            views = [Picture(video, f"{name} (its video's first frame)", ("elements", i, "video"), True)]
        else:
            views = [Picture(element.frontal, f"{name} (frontal)", ("elements", i, "frontal"), True)]
        views += [Picture(img, f"{name} view {j + 1}", ("elements", i, "references", j), False)
                  for j, img in enumerate(element.references)]
        if video is not None and video is not element.frontal:
            views.append(Picture(video, f"{name} (its video's first frame)", ("elements", i, "video"), False))
        groups[("element", i + 1)] = views
    for i, img in enumerate(request.reference_images):
        groups[("image", i + 1)] = [Picture(img, f"@Image{i + 1}", ("reference_images", i), True)]
    order: list[tuple[str, int]] = []
    for match in _TOKEN.finditer(request.prompt):
        key = (match.group(1).lower(), int(match.group(2)))
        if key in groups and key not in order:
            order.append(key)
    order += [key for key in groups if key not in order]
    return [p for key in order for p in groups[key]]


def fit(pictures: list[Picture], opening: int, frames: int) -> tuple[list[Picture], list[Picture]]:
    """(the pictures that fit ``frames`` at ``MIN_FRAMES_PER_STILL`` each besides ``opening`` other
    stills, the ones left out): extra element views go first, from the end, then anything else."""
    room = max(1, frames // MIN_FRAMES_PER_STILL - opening)
    kept = list(pictures)
    for primary in (False, True):
        for p in reversed(list(kept)):
            if len(kept) <= room:
                break
            if p.primary is primary:
                kept.remove(p)
    return kept, [p for p in pictures if p not in kept]


def allot(count: int, weights: list[int]) -> list[int]:
    """``count`` (≥ len(weights)) items spread over slots in proportion to ``weights``, at least one
    each (largest remainder; ties go to the earlier slot)."""
    total = sum(weights)
    spare = count - len(weights)
    raw = [1 + spare * w / total for w in weights]
    counts = [int(r) for r in raw]
    by_remainder = sorted(range(len(weights)), key=lambda k: (-(raw[k] - counts[k]), k))
    for k in by_remainder[: count - sum(counts)]:
        counts[k] += 1
    return counts


def dissolve_lengths(frames: int, count: int) -> tuple[list[int], int]:
    """(frames per still, fade frames) for ``count`` stills cross-dissolving over ``frames`` frames:
    the parts overlap by the fade, and each keeps a stretch of at least half its length unblended."""
    fade = min(MAX_FADE, frames // (4 * count)) if count > 1 else 0
    base, extra = divmod(frames + fade * (count - 1), count)
    return [base + (1 if k < extra else 0) for k in range(count)], fade
