"""Motion brush: masked regions that travel along trajectories, and a region that stays still.

A dynamic mask becomes a *sprite*: the frame's pixels in the mask's bounding box with an alpha
that is fully opaque over the mask (grown a little) and feathered outside it. The sprite moves
along its trajectory (arc-length parameterised polyline, smootherstep timing, so it starts and
stops softly) at sub-pixel positions. The hole it leaves is filled once, before the first frame:
the low frequencies come from Telea inpainting (at 1/4 resolution: fast, smooth) and the fine
texture from the best-matching nearby patch of the same image, so the fill has the grain of its
surroundings instead of a smear.

Everything works on I420 planes; sprite boxes are snapped to even pixels so chroma lines up.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from stillreel.engines.motion.geometry import chroma_mask, planes


def _disc(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


class Path:
    """A polyline walked at constant speed: ``at(s)`` for s in 0..1 is the point at that share of
    its length; ``at(s) - at(0)`` is how far the sprite has moved."""

    def __init__(self, points: list[tuple[float, float]]):
        self.points = np.asarray(points, np.float64)
        seg = np.linalg.norm(np.diff(self.points, axis=0), axis=1)
        self.cum = np.concatenate([[0.0], np.cumsum(seg)])
        self.seg = seg

    @property
    def length(self) -> float:
        return float(self.cum[-1])

    def at(self, s: float) -> np.ndarray:
        if self.length == 0:
            return self.points[0].copy()
        d = min(max(s, 0.0), 1.0) * self.length
        i = min(int(np.searchsorted(self.cum, d, side="right")) - 1, len(self.seg) - 1)
        u = 0.0 if self.seg[i] == 0 else (d - self.cum[i]) / self.seg[i]
        return self.points[i] + u * (self.points[i + 1] - self.points[i])


# ------------------------------------------------------------------------------ hole fill


def _telea_lowres(rgb: np.ndarray, hole: np.ndarray) -> np.ndarray:
    h, w = hole.shape
    sw, sh = max(w // 4, 1), max(h // 4, 1)
    small = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA)
    small_hole = cv2.dilate(cv2.resize(hole, (sw, sh), interpolation=cv2.INTER_NEAREST), _disc(1))
    return cv2.resize(cv2.inpaint(small, small_hole, 3, cv2.INPAINT_TELEA), (w, h), interpolation=cv2.INTER_CUBIC)


def _best_offset(img: np.ndarray, hole_all: np.ndarray, component: np.ndarray) -> tuple[int, int] | None:
    """The shift d such that the pixels at (hole + d) are all known and the ring around them
    looks most like the ring around the hole (mean abs difference), or None."""
    h, w = component.shape
    x, y, bw, bh = cv2.boundingRect(component)
    r = max(4, min(bw, bh) // 8)
    # Work in a window around the hole: full-frame morphology would cost 10x more.
    wx0, wy0, wx1, wy1 = max(x - r - 1, 0), max(y - r - 1, 0), min(x + bw + r + 1, w), min(y + bh + r + 1, h)
    local = component[wy0:wy1, wx0:wx1]
    ring = cv2.dilate(local, _disc(r)) & ~cv2.dilate(local, _disc(1))
    ry, rx = np.nonzero(ring)
    hy, hx = np.nonzero(local)
    ry, rx, hy, hx = ry + wy0, rx + wx0, hy + wy0, hx + wx0
    step_r, step_h = max(1, len(ry) // 2000), max(1, len(hy) // 4000)
    ry, rx, hy, hx = ry[::step_r], rx[::step_r], hy[::step_h], hx[::step_h]
    ref = img[ry, rx].astype(np.int16)
    best, best_cost = None, math.inf
    for scale in (1.1, 1.6, 2.2):
        for ang in range(0, 360, 30):
            dx = round(math.cos(math.radians(ang)) * bw * scale)
            dy = round(math.sin(math.radians(ang)) * bh * scale)
            if not (0 <= x + dx and x + bw + dx <= w and 0 <= y + dy and y + bh + dy <= h):
                continue
            if hole_all[hy + dy, hx + dx].any():
                continue
            sy, sx = np.clip(ry + dy, 0, h - 1), np.clip(rx + dx, 0, w - 1)
            cost = float(np.abs(img[sy, sx].astype(np.int16) - ref).mean())
            if cost < best_cost:
                best, best_cost = (dx, dy), cost
    return best


def fill_hole(rgb: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """``rgb`` with the pixels under ``hole`` (0/255) replaced by a plausible background."""
    if not hole.any():
        return rgb.copy()
    smooth = _telea_lowres(rgb, hole)
    out = rgb.copy()
    out[hole > 0] = smooth[hole > 0]
    count, labels, stats, _ = cv2.connectedComponentsWithStats((hole > 0).astype(np.uint8))
    h, w = hole.shape
    for label in range(1, count):
        component = np.zeros_like(hole)
        cx, cy, cw, ch = stats[label, :4]
        component[cy : cy + ch, cx : cx + cw] = np.where(labels[cy : cy + ch, cx : cx + cw] == label, 255, 0)
        d = _best_offset(rgb, hole, component)
        if d is None:
            continue  # no clean patch nearby: keep the smooth fill
        x, y, bw, bh = cv2.boundingRect(component)
        m = 4
        x0, y0 = max(x - m, 0, -d[0]), max(y - m, 0, -d[1])
        x1, y1 = min(x + bw + m, w, w - d[0]), min(y + bh + m, h, h - d[1])
        patch = np.ascontiguousarray(rgb[y0 + d[1] : y1 + d[1], x0 + d[0] : x1 + d[0]])
        sel = cv2.dilate(component[y0:y1, x0:x1], _disc(1))
        # Poisson cloning: the patch's texture, its colours bent to meet the hole's border.
        # Solved on a window around the hole only (cloning into the whole frame costs ~10x more).
        wx0, wy0, wx1, wy1 = max(x0 - m, 0), max(y0 - m, 0), min(x1 + m, w), min(y1 + m, h)
        window = np.ascontiguousarray(out[wy0:wy1, wx0:wx1])
        out[wy0:wy1, wx0:wx1] = cv2.seamlessClone(patch, window, sel, _clone_centre(sel, x0 - wx0, y0 - wy0),
                                                  cv2.NORMAL_CLONE)
    return out


def _clone_centre(mask: np.ndarray, x0: int, y0: int) -> tuple[int, int]:
    # seamlessClone centres the mask's bounding box on this point (integer halves, as OpenCV does).
    mx, my, mw, mh = cv2.boundingRect(mask)
    return x0 + mx + mw // 2, y0 + my + mh // 2


# ------------------------------------------------------------------------------ sprites


def _shifted_blend(plane: np.ndarray, layer: np.ndarray, ox: float, oy: float) -> None:
    """Blend ``layer`` (h, w, 2: value, alpha) onto ``plane`` with its top-left at (ox, oy)."""
    ix, iy = math.floor(ox), math.floor(oy)
    fx, fy = ox - ix, oy - iy
    h, w = layer.shape[:2]
    if fx or fy:  # sub-pixel part: bilinear shift of value and alpha together
        layer = cv2.warpAffine(layer, np.float32([[1, 0, fx], [0, 1, fy]]), (w + 1, h + 1),
                               flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        h, w = h + 1, w + 1
    ph, pw = plane.shape
    x0, y0, x1, y1 = max(ix, 0), max(iy, 0), min(ix + w, pw), min(iy + h, ph)
    if x1 <= x0 or y1 <= y0:
        return  # entirely outside the frame
    part = layer[y0 - iy : y1 - iy, x0 - ix : x1 - ix]
    alpha = part[..., 1].astype(np.float32) * (1 / 255)
    roi = plane[y0:y1, x0:x1]
    roi[:] = cv2.blendLinear(np.ascontiguousarray(part[..., 0]), roi, alpha, 1 - alpha)


class Sprite:
    """A masked region of an I420 frame that can be drawn elsewhere, feathered, sub-pixel."""

    def __init__(self, frame: np.ndarray, mask: np.ndarray, path: Path, grow: int, feather: int):
        H, W = mask.shape
        core = cv2.dilate(mask, _disc(grow))
        soft = cv2.dilate(mask, _disc(grow + feather))
        alpha = cv2.GaussianBlur(soft, (2 * feather + 1, 2 * feather + 1), 0)
        alpha[core > 0] = 255  # exactly opaque over the hole it leaves
        x, y, w, h = cv2.boundingRect(soft)
        x0, y0 = max(x - 2, 0) // 2 * 2, max(y - 2, 0) // 2 * 2
        x1, y1 = min(-(-(x + w + 2) // 2) * 2, W), min(-(-(y + h + 2) // 2) * 2, H)
        Y, U, V = planes(frame)
        a = alpha[y0:y1, x0:x1]
        ac = cv2.resize(a, ((x1 - x0) // 2, (y1 - y0) // 2), interpolation=cv2.INTER_AREA)
        cy0, cy1, cx0, cx1 = y0 // 2, y1 // 2, x0 // 2, x1 // 2
        self.layers = (
            np.dstack([Y[y0:y1, x0:x1], a]),
            np.dstack([U[cy0:cy1, cx0:cx1], ac]),
            np.dstack([V[cy0:cy1, cx0:cx1], ac]),
        )
        self.origin = (float(x0), float(y0))
        self.hole = core
        self.path = path

    def offset(self, s: float) -> np.ndarray:
        """How far (dx, dy) the sprite has moved at path parameter s."""
        return self.path.at(s) - self.path.at(0.0)

    def draw(self, frame: np.ndarray, s: float) -> None:
        dx, dy = self.offset(s)
        ox, oy = self.origin[0] + dx, self.origin[1] + dy
        Y, U, V = planes(frame)
        _shifted_blend(Y, self.layers[0], ox, oy)
        # chroma sample centres sit at luma 2x + 0.5, so a luma shift d is a chroma shift d / 2
        _shifted_blend(U, self.layers[1], ox / 2, oy / 2)
        _shifted_blend(V, self.layers[2], ox / 2, oy / 2)


def holes_of(sprites: list[Sprite]) -> np.ndarray:
    hole = np.zeros_like(sprites[0].hole)
    for sp in sprites:
        hole |= sp.hole
    return hole


def patch_planes(dst: np.ndarray, src: np.ndarray, mask: np.ndarray) -> None:
    """Copy ``src`` into ``dst`` (both I420) where ``mask`` (full-res, 0/255) is set."""
    cm = chroma_mask(mask)
    for d, s, m in zip(planes(dst), planes(src), (mask, cm, cm)):
        np.copyto(d, s, where=m > 0)


# ------------------------------------------------------------------------------ static region


class StaticRegion:
    """Pixels that stay exactly as in the input, in screen space, whatever else moves."""

    def __init__(self, frame: np.ndarray, mask: np.ndarray, feather: int):
        H, W = mask.shape
        # Feathered outward only when the background moves (hard edges would show a seam).
        alpha = mask.copy()
        if feather > 0:
            soft = cv2.GaussianBlur(cv2.dilate(mask, _disc(feather)), (2 * feather + 1, 2 * feather + 1), 0)
            alpha = np.maximum(alpha, soft)
        x, y, w, h = cv2.boundingRect(alpha)
        x0, y0 = x // 2 * 2, y // 2 * 2
        x1, y1 = min(-(-(x + w) // 2) * 2, W), min(-(-(y + h) // 2) * 2, H)
        self.box = (x0, y0, x1, y1)
        a = alpha[y0:y1, x0:x1]
        ac = cv2.resize(a, ((x1 - x0) // 2, (y1 - y0) // 2), interpolation=cv2.INTER_AREA)
        ac = np.maximum(ac, chroma_mask(mask[y0:y1, x0:x1]))  # chroma of every static pixel is kept
        Y, U, V = planes(frame)
        self.values = (Y[y0:y1, x0:x1].copy(), U[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2].copy(),
                       V[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2].copy())
        self.weights = tuple((w_.astype(np.float32) * (1 / 255)) for w_ in (a, ac, ac))
        self.hard = feather == 0

    def paste(self, frame: np.ndarray) -> None:
        x0, y0, x1, y1 = self.box
        if x1 <= x0 or y1 <= y0:
            return
        boxes = ((y0, y1, x0, x1), (y0 // 2, y1 // 2, x0 // 2, x1 // 2), (y0 // 2, y1 // 2, x0 // 2, x1 // 2))
        for plane, value, weight, (a, b, c, d) in zip(planes(frame), self.values, self.weights, boxes):
            roi = plane[a:b, c:d]
            if self.hard:
                np.copyto(roi, value, where=weight > 0)
            else:
                roi[:] = cv2.blendLinear(value, roi, weight, 1 - weight)
