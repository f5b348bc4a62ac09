"""Output sizes, the cover-crop that fits the input to them, easing, and I420 plane warps.

The engine synthesises frames directly as I420 (``yuv420p``: a full-resolution Y plane and two
half-resolution chroma planes stacked in one array), the encoder's own format: warping 1.5 bytes
per pixel instead of 3 and skipping the per-frame RGB→YUV conversion makes synthesis ~2.5×
cheaper. Chroma sample centres sit at luma (2x + 0.5, 2y + 0.5), so a luma-space transform M
becomes A⁻¹·M·A in chroma space, with A the chroma → luma map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from stillreel.engines.base import Aspect, Tier

FPS = 24
# Kling's output sizes per aspect ratio.
SIZES: dict[Aspect, tuple[int, int]] = {
    Aspect.LANDSCAPE: (1280, 720),
    Aspect.PORTRAIT: (720, 1280),
    Aspect.SQUARE: (960, 960),
}

_CHROMA_TO_LUMA = np.array([[2.0, 0, 0.5], [0, 2.0, 0.5], [0, 0, 1.0]])
_LUMA_TO_CHROMA = np.linalg.inv(_CHROMA_TO_LUMA)


def smootherstep(t: float) -> float:
    """C2 ease-in-out: zero velocity and acceleration at both ends, so moves start and stop softly."""
    t = min(max(t, 0.0), 1.0)
    return t * t * t * (t * (6 * t - 15) + 10)


def nearest_aspect(width: int, height: int) -> Aspect:
    """The Kling aspect ratio closest to the image's (in log scale, so 2:1 and 1:2 are symmetric)."""
    ratio = math.log(width / height)
    # On a tie (4:3 sits exactly between 16:9 and 1:1) the image's orientation wins.
    return min(SIZES, key=lambda a: (round(abs(ratio - math.log(SIZES[a][0] / SIZES[a][1])), 9), a is Aspect.SQUARE))


# fal documents no pixel sizes for its tiers: standard and pro keep the sizes above (720p class);
# 4k is UHD, 3x those sides (3840x2160, 2160x3840, 2880x2880: the same pixel count per aspect).
TIER_SIZES: dict[Tier, dict[Aspect, tuple[int, int]]] = {
    Tier.STANDARD: SIZES,
    Tier.PRO: SIZES,
    Tier.UHD: {a: (w * 3, h * 3) for a, (w, h) in SIZES.items()},
}


def output_size(aspect: Aspect, size_scale: float = 1.0, tier: Tier = Tier.STANDARD) -> tuple[int, int]:
    """(width, height) for ``aspect`` at ``tier``, optionally scaled down; always even (yuv420p needs it)."""
    w, h = TIER_SIZES[Tier(tier)][aspect]
    return max(2, round(w * size_scale / 2) * 2), max(2, round(h * size_scale / 2) * 2)


@dataclass(frozen=True)
class Cover:
    """Scale-to-cover then centre-crop: maps input pixels to output pixels without stretching.

    An input point (x, y) (pixel centres, top-left origin) lands at
    ((x + 0.5) * sx - 0.5 - x0, (y + 0.5) * sy - 0.5 - y0) in the output.
    """

    in_w: int
    in_h: int
    out_w: int
    out_h: int
    sx: float
    sy: float
    x0: int
    y0: int

    @classmethod
    def fit(cls, in_w: int, in_h: int, out_w: int, out_h: int) -> Cover:
        s = max(out_w / in_w, out_h / in_h)
        rw, rh = max(out_w, round(in_w * s)), max(out_h, round(in_h * s))
        return cls(in_w, in_h, out_w, out_h, rw / in_w, rh / in_h, (rw - out_w) // 2, (rh - out_h) // 2)

    @property
    def kept_fraction(self) -> float:
        """Share of the input's area that survives the crop."""
        return (self.out_w / self.sx) * (self.out_h / self.sy) / (self.in_w * self.in_h)

    @property
    def kept_size(self) -> tuple[float, float]:
        """Size, in input pixels, of the part of the input that is kept."""
        return self.out_w / self.sx, self.out_h / self.sy

    def _resized(self, img: np.ndarray, interp: int) -> np.ndarray:
        size = (round(self.in_w * self.sx), round(self.in_h * self.sy))
        r = cv2.resize(img, size, interpolation=interp)
        return r[self.y0 : self.y0 + self.out_h, self.x0 : self.x0 + self.out_w]

    def image(self, img: np.ndarray) -> np.ndarray:
        # INTER_AREA to shrink (no aliasing), bicubic to enlarge.
        interp = cv2.INTER_AREA if self.sx < 1 else cv2.INTER_CUBIC
        return np.ascontiguousarray(self._resized(img, interp))

    def mask(self, mask: np.ndarray) -> np.ndarray:
        """A 0/255 mask mapped like the image (linear resample, then threshold at half)."""
        m = self._resized((mask > 127).astype(np.uint8) * 255, cv2.INTER_LINEAR)
        return np.where(m >= 128, 255, 0).astype(np.uint8)

    def point(self, x: float, y: float) -> tuple[float, float]:
        return (x + 0.5) * self.sx - 0.5 - self.x0, (y + 0.5) * self.sy - 0.5 - self.y0

    def input_rect(self, x: float, y: float, w: float, h: float) -> tuple[float, float, float, float]:
        """An output-space rectangle (x, y, w, h; pixel edges) expressed in input pixels."""
        return (x + self.x0) / self.sx, (y + self.y0) / self.sy, w / self.sx, h / self.sy


# ------------------------------------------------------------------------------ I420 planes


def planes(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views (Y, U, V) into an I420 buffer of shape (h * 3 // 2, w); writes go to ``buf``."""
    h, w = buf.shape[0] * 2 // 3, buf.shape[1]
    q = h * w // 4
    flat = buf.reshape(-1)
    return (
        buf[:h],
        flat[h * w : h * w + q].reshape(h // 2, w // 2),
        flat[h * w + q :].reshape(h // 2, w // 2),
    )


def new_frame(width: int, height: int) -> np.ndarray:
    return np.empty((height * 3 // 2, width), np.uint8)


def chroma_matrix(m: np.ndarray) -> np.ndarray:
    """A luma-pixel transform (3x3) expressed in chroma-plane pixels."""
    return _LUMA_TO_CHROMA @ m @ _CHROMA_TO_LUMA


def chroma_mask(mask: np.ndarray) -> np.ndarray:
    """Half-resolution mask: a chroma sample is selected if any of its four luma pixels is."""
    h, w = mask.shape
    return mask.reshape(h // 2, 2, w // 2, 2).max(axis=(1, 3))


def is_affine(m: np.ndarray) -> bool:
    return abs(m[2, 0]) < 1e-12 and abs(m[2, 1]) < 1e-12 and abs(m[2, 2] - 1) < 1e-12


def is_identity(m: np.ndarray) -> bool:
    return bool(np.allclose(m, np.eye(3), rtol=0, atol=1e-9))


def warp_i420(src: np.ndarray, m: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Warp an I420 frame by ``m``, a 3x3 *destination → source* map in luma pixels.

    Bilinear, sub-pixel exact; edges replicate (callers keep the view inside the source)."""
    h, w = src.shape[0] * 2 // 3, src.shape[1]
    out = new_frame(w, h) if out is None else out
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    for s, d, mat in zip(planes(src), planes(out), (m, chroma_matrix(m), chroma_matrix(m))):
        size = (d.shape[1], d.shape[0])
        if is_affine(mat):
            cv2.warpAffine(s, mat[:2], size, dst=d, flags=flags, borderMode=cv2.BORDER_REPLICATE)
        else:
            cv2.warpPerspective(s, mat, size, dst=d, flags=flags, borderMode=cv2.BORDER_REPLICATE)
    return out


# ------------------------------------------------------------------------------ zoom fast path
# A warp that only scales and translates (zooms, vertical or horizontal slides: most camera
# moves) can be done by cv2.resize. resize maps output pixel u to source x0 + (u + 0.5)·a − 0.5
# for a ROI starting at integer x0, with a = 1/fx exactly. The wanted map a·x + b has a fractional
# offset, so we pick the ROI start x0 and how many leading output pixels u0 to drop such that
# x0 + (u0 + 0.5)·a − 0.5 lands within TOLERANCE of b. (For a near 1, or rational with a small
# denominator, no such pair may exist: fall back.)
#
# With OpenCV 5.0 this was ~3x cheaper than warpAffine. OpenCV 5.1's SIMD warpAffine turned that
# round (720p I420, one thread, 2-vCPU EPYC: warpAffine 0.40 ms of CPU a frame, this path 1.23 ms),
# so Scene takes this path only where RESIZE_BEATS_WARP. The choice depends on the installed
# OpenCV alone, never on a timing, so the same request still gives the same frames. (Versions
# from 4.10 to 5.0 were not re-measured: they keep the path that was measured faster on 5.0.)
RESIZE_BEATS_WARP = tuple(int(x) for x in cv2.__version__.split(".")[:2]) < (5, 1)
PAD = 96  # replicated border around the source, so ROIs may start left of / above it
_MAX_SKIP = 90
_TOLERANCE = 0.02  # px: a constant offset this small is invisible (and no jitter)


class Padded:
    """The planes of an I420 frame with a replicated ``PAD``-pixel border, for ``resize_warp``."""

    def __init__(self, frame: np.ndarray):
        self.shape = frame.shape
        self.planes = [cv2.copyMakeBorder(p, PAD, PAD, PAD, PAD, cv2.BORDER_REPLICATE) for p in planes(frame)]


_SKIPS = np.arange(_MAX_SKIP)


def _axis(a: float, b: float, size: int, padded: int) -> tuple[int, int, int] | None:
    """(ROI start, output pixels to skip, ROI length) in padded coordinates, or None."""
    x0 = float(b) + PAD + 0.5 - (_SKIPS + 0.5) * float(a)
    start = np.rint(x0)
    err = np.where(start >= 0, np.abs(start - x0), np.inf)
    skip = int(np.argmin(err))
    if err[skip] > _TOLERANCE:
        return None
    begin = int(start[skip])
    length = math.ceil((skip + size + 1) * a) + 3
    return (begin, skip, length) if begin + length <= padded else None


def is_scale_translate(m: np.ndarray) -> bool:
    return is_affine(m) and abs(m[0, 1]) < 1e-12 and abs(m[1, 0]) < 1e-12


def resize_warp(src: Padded, m: np.ndarray, out: np.ndarray | None = None) -> np.ndarray | None:
    """``warp_i420`` for a scale + translate ``m`` that magnifies by ≥ 1.5 %, done with cv2.resize;
    None when that cannot be done within 0.02 px (the caller then warps)."""
    h, w = src.shape[0] * 2 // 3, src.shape[1]
    ax, ay = m[0, 0], m[1, 1]
    if not (is_scale_translate(m) and 0.1 < ax <= 0.985 and 0.1 < ay <= 0.985):
        return None
    jobs = []
    for plane, mat in zip(src.planes, (m, chroma_matrix(m), chroma_matrix(m))):
        ph, pw = plane.shape
        ox = _axis(ax, mat[0, 2], pw - 2 * PAD, pw)
        oy = _axis(ay, mat[1, 2], ph - 2 * PAD, ph)
        if ox is None or oy is None:
            return None
        jobs.append((plane, ox, oy))
    out = new_frame(w, h) if out is None else out
    for (plane, (x0, u0, lw), (y0, v0, lh)), dst in zip(jobs, planes(out)):
        big = cv2.resize(plane[y0 : y0 + lh, x0 : x0 + lw], None, fx=1 / ax, fy=1 / ay,
                         interpolation=cv2.INTER_LINEAR)
        dst[:] = big[v0 : v0 + dst.shape[0], u0 : u0 + dst.shape[1]]
    return out
