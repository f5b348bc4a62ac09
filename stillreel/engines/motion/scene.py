"""Renderers: objects that turn a prepared still into the frames of one shot.

A renderer has ``frames`` (how many it renders), ``prepare()`` (the one-off work: conversions,
hole fill, camera path, optical flow; run on the render thread, not in ``generate``),
``render(i) -> I420 frame`` for i in 0..frames-1, ``info`` (facts for ``Clip.info``) and ``light``:
whether a frame costs much less to render than to encode (camera moves over a still), so that
the engine renders it on one OpenCV thread beside the encoder's (``engine.opencv_threads``).

``Scene`` composes, per frame: the still (with its motion-brush sprites drawn at their place on
their paths) → the camera view → the static region pasted back in screen space.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from stillreel.engines.motion import geometry
from stillreel.engines.motion.brush import Path, Sprite, StaticRegion, fill_hole, holes_of, patch_planes
from stillreel.engines.motion.camera import Move, camera_path, describe
from stillreel.engines.motion.geometry import Padded, is_identity, resize_warp, smootherstep, warp_i420
from stillreel.media.encode import rgb_to_yuv420p


class Renderer(Protocol):
    frames: int
    info: dict
    light: bool

    def prepare(self) -> None: ...

    def render(self, i: int) -> np.ndarray: ...


@dataclass(frozen=True)
class BrushStroke:
    mask: np.ndarray  # output-frame pixels, 0/255
    points: tuple[tuple[float, float], ...]  # output-frame pixels, top-left origin


class Scene:
    """A camera move over a still, with optional motion-brush strokes and static region."""

    def __init__(
        self,
        still: Callable[[], np.ndarray],
        frames: int,
        move: Move,
        strokes: tuple[BrushStroke, ...] = (),
        static_mask: np.ndarray | None = None,
    ):
        self._still, self.frames, self.move = still, frames, move
        self.strokes, self.static_mask = strokes, static_mask
        self.info: dict = {}
        self.light = not strokes  # a warp (and a paste) a frame; sprites are drawn and blended

    def prepare(self) -> None:
        rgb = self._still()
        h, w = rgb.shape[:2]
        self.source = rgb_to_yuv420p(rgb)
        self.path = camera_path(w, h, self.frames, self.move)
        moving = not self.move.is_still
        self.info = {"camera": describe(self.move, self.path.alpha)}
        # Sizes that scale with the frame (values chosen at 720p).
        unit = max(1, round(min(w, h) / 720 * 3))
        self.sprites: list[Sprite] = []
        if self.strokes:
            self.sprites = [Sprite(self.source, s.mask, Path(list(s.points)), grow=unit, feather=2 * unit)
                            for s in self.strokes]
            hole = holes_of(self.sprites)
            self.base = self.source.copy()
            patch_planes(self.base, rgb_to_yuv420p(fill_hole(rgb, hole)), hole)
            self.info["motion_brush"] = f"{len(self.sprites)} region(s) moved along their trajectories"
        # Zooms and slides of the plain still take the resize path, where that is the cheaper one
        # (geometry.RESIZE_BEATS_WARP: it depends on the OpenCV version).
        fast = moving and not self.sprites and geometry.RESIZE_BEATS_WARP
        self.padded = Padded(self.source) if fast else None
        # Frames are handed on, never written by their consumers (the encoder copies them): an
        # unchanged view can be the source itself, read-only so that a writer fails loudly.
        self._held = self.source.view()
        self._held.flags.writeable = False
        self.static = None
        if self.static_mask is not None:
            self.static = StaticRegion(self.source, self.static_mask, feather=2 * unit if moving else 0)
            self.info["static_region"] = "pinned in screen space" if moving else "held still"

    def render(self, i: int) -> np.ndarray:
        if self.sprites and i > 0:
            layer = self.base.copy()
            s = smootherstep(i / max(self.frames - 1, 1))
            for sprite in self.sprites:
                sprite.draw(layer, s)
        else:
            layer = self.source
        m = self.path.matrices[i]
        if is_identity(m):
            if layer is self.source and self.static is None:
                return self._held  # a static hold: the same frame again, no copy
            out = layer.copy() if layer is self.source else layer
        else:
            out = resize_warp(self.padded, m) if self.padded is not None and layer is self.source else None
            if out is None:
                out = warp_i420(layer, m)
        if self.static is not None:
            self.static.paste(out)
        return out


class Sequence:
    """Renderers played one after the other: hard cuts between shots."""

    def __init__(self, parts: list[Renderer]):
        self.parts = parts
        self.starts = np.cumsum([0] + [p.frames for p in parts])
        self.frames = int(self.starts[-1])
        self.info: dict = {}
        self.light = all(p.light for p in parts)

    def prepare(self) -> None:
        for p in self.parts:
            p.prepare()
        self.info = {"shots": [dict(p.info, frames=p.frames) for p in self.parts]} if len(self.parts) > 1 \
            else dict(self.parts[0].info)

    def render(self, i: int) -> np.ndarray:
        k = int(np.searchsorted(self.starts, i, side="right")) - 1
        return self.parts[k].render(i - int(self.starts[k]))


class Dissolve:
    """Renderers that overlap by ``fade`` frames, each cross-dissolving into the next.

    Parts are prepared when their first frame is due and dropped after their last, so a shot
    through many pictures (at 4k too) holds at most two of them in memory."""

    def __init__(self, parts: list[Renderer], fade: int, labels: list[str]):
        self.parts, self.fade = list(parts), fade
        self.starts = [sum(p.frames for p in parts[:k]) - k * fade for k in range(len(parts))]
        self.frames = sum(p.frames for p in parts) - fade * (len(parts) - 1)
        self.info = {"stills": list(labels), "dissolve_frames": fade}
        self.light = all(p.light for p in parts)
        self._ready: dict[int, Renderer] = {}

    def prepare(self) -> None:
        self._ready = {}

    def _part(self, k: int) -> Renderer:
        if k not in self._ready:
            for old in [j for j in self._ready if j < k - 1]:
                del self._ready[old]
            self.parts[k].prepare()
            self._ready[k] = self.parts[k]
        return self._ready[k]

    def render(self, i: int) -> np.ndarray:
        k = max(j for j, s in enumerate(self.starts) if s <= i)
        local = i - self.starts[k]
        frame = self._part(k).render(local)
        if k > 0 and local < self.fade:
            w = smootherstep((local + 1) / (self.fade + 1))
            before = self._part(k - 1).render(i - self.starts[k - 1])
            frame = cv2.addWeighted(before, 1.0 - w, frame, w, 0.0)
        return frame
