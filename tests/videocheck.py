"""Objective, eye-free checks on real MP4 files, and procedural test images.

Shared by the engine and encoder tests (and usable by anyone's): decode with PyAV, container facts,
PSNR/SSIM, optical-flow camera motion, cut detection, static-region stability, sprite tracking and
the morph "ghost" residual. Thresholds and their negative controls: shared/reference/cpu-engine.md §3.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path

import av
import cv2
import numpy as np

from stillreel.engines.base import Clip, NullProgress
from stillreel.media.encode import encode

# ------------------------------------------------------------------------------ images


def fractal_image(width: int, height: int, seed: int = 0) -> np.ndarray:
    """RGB uint8 multi-octave coloured noise with some hard-edged shapes: texture at every scale
    (optical flow and template matching need it; flat colours would make every check vacuous)."""
    rng = np.random.default_rng(seed)
    acc = np.zeros((height, width, 3), np.float32)
    amp = 1.0
    for octave in range(6):
        cw, ch = max(2, width >> (6 - octave)), max(2, height >> (6 - octave))
        noise = rng.standard_normal((ch, cw, 3)).astype(np.float32)
        acc += amp * cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
        amp *= 0.6
    img = ((acc - acc.min()) / (acc.max() - acc.min()) * 255).astype(np.uint8)
    for _ in range(30):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        s = int(rng.integers(6, max(7, width // 10)))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            cv2.rectangle(img, (x, y), (x + s, y + s // 2), colour, -1)
        else:
            cv2.circle(img, (x, y), s // 2, colour, max(1, width // 400))
    return img


def disc_mask(width: int, height: int, centre: tuple[int, int], radius: int) -> np.ndarray:
    return cv2.circle(np.zeros((height, width), np.uint8), centre, radius, 255, -1)


def with_object(img: np.ndarray, mask: np.ndarray, seed: int = 99) -> np.ndarray:
    """``img`` with a distinctive, textured object painted under ``mask``."""
    h, w = mask.shape
    # High-contrast and aperiodic (a periodic pattern would make template matching ambiguous).
    obj = cv2.convertScaleAbs(fractal_image(w, h, seed), alpha=1.8, beta=-100)
    rng = np.random.default_rng(seed)
    for _ in range(w * h // 400):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        cv2.circle(obj, (x, y), int(rng.integers(2, 6)), tuple(int(v) for v in rng.integers(0, 256, 3)), -1)
    out = img.copy()
    out[mask > 0] = obj[mask > 0]
    return out


# ------------------------------------------------------------------------------ encode / decode


def encode_frames(frames: Iterable[np.ndarray], path: Path, fps: int = 24) -> Path:
    """Encode RGB frames (a list, for test-made negative controls) with the product's encoder."""
    frames = list(frames)
    h, w = frames[0].shape[:2]
    encode(Clip(fps, w, h, len(frames), iter(frames), "rgb24"), path)
    return path


def render(engine, request, path: Path, progress=None) -> tuple[Path, Clip]:
    """engine → encode → path; returns the path and the clip (for ``clip.info``)."""
    clip = engine.generate(request, progress or NullProgress())
    encode(clip, path)
    return path, clip


def decode(path: Path) -> list[np.ndarray]:
    """All frames, RGB uint8."""
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def top_atoms(path: Path) -> list[str]:
    data = Path(path).read_bytes()
    i, out = 0, []
    while i + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[i : i + 8])
        if size == 1:
            size = struct.unpack(">Q", data[i + 8 : i + 16])[0]
        out.append(kind.decode("latin1"))
        i += size if size else len(data)
    return out


def probe(path: Path) -> dict:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        cc = v.codec_context
        a = c.streams.audio[0] if c.streams.audio else None
        info = dict(
            codec=cc.name, profile=cc.profile, pix_fmt=cc.pix_fmt, width=cc.width, height=cc.height,
            fps=float(v.average_rate), frames=v.frames, duration=float(v.duration * v.time_base),
            colorspace=int(cc.colorspace), color_primaries=int(cc.color_primaries), color_trc=int(cc.color_trc),
            audio=None if a is None else dict(codec=a.codec_context.name, rate=a.codec_context.sample_rate,
                                              duration=float(a.duration * a.time_base)),
        )
    atoms = top_atoms(path)
    info["faststart"] = "moov" in atoms and "mdat" in atoms and atoms.index("moov") < atoms.index("mdat")
    return info


# ------------------------------------------------------------------------------ image metrics


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def luma_psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of the grey images: ignores the colour bleeding that 4:2:0 chroma subsampling (the
    format itself, not the engine) causes on saturated hard edges."""
    return psnr(gray(a), gray(b))


def gray(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Grey SSIM, Gaussian window sigma 1.5 (Wang et al. 2004)."""
    a, b = gray(a).astype(np.float32), gray(b).astype(np.float32)

    def g(x):
        return cv2.GaussianBlur(x, (11, 11), 1.5)

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    ma, mb = g(a), g(b)
    va, vb, cab = g(a * a) - ma * ma, g(b * b) - mb * mb, g(a * b) - ma * mb
    return float(np.mean(((2 * ma * mb + c1) * (2 * cab + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2))))


def static_region(
    frames: list[np.ndarray], ref: np.ndarray, mask: np.ndarray, erode: int = 8
) -> tuple[int, float, float]:
    """(max, 99.9th percentile, mean) abs difference inside the eroded mask over all frames.
    For decoded video pass ``ref`` = decoded frame 0 (temporal stability, not codec loss)."""
    m = cv2.erode(mask, np.ones((2 * erode + 1,) * 2, np.uint8)) > 0 if erode else mask > 0
    d = np.stack([np.abs(f[m].astype(np.int16) - ref[m]).max(axis=1) for f in frames])
    return int(d.max()), float(np.percentile(d, 99.9)), float(d.mean())


def track(frames: list[np.ndarray], ref: np.ndarray, mask: np.ndarray, expected: list[tuple[float, float]],
          search: int = 24) -> tuple[float, float, int]:
    """Find ``ref``'s masked region in each frame (masked template match within ±search px of the
    expected displacement); (mean, max, count) error in px between found and expected (dx, dy)."""
    x, y, w, h = cv2.boundingRect(mask)
    tpl = ref[y : y + h, x : x + w]
    tm = cv2.merge([mask[y : y + h, x : x + w]] * 3)
    errs = []
    for f, (ex, ey) in zip(frames, expected):
        cx, cy = int(round(x + ex)), int(round(y + ey))
        H, W = f.shape[:2]
        x0, y0 = max(cx - search, 0), max(cy - search, 0)
        x1, y1 = min(cx + w + search, W), min(cy + h + search, H)
        if x1 - x0 < w or y1 - y0 < h:
            continue  # the region is partly outside the frame
        r = cv2.matchTemplate(f[y0:y1, x0:x1], tpl, cv2.TM_CCORR_NORMED, mask=tm)
        _, _, _, (bx, by) = cv2.minMaxLoc(np.nan_to_num(r, nan=-1))
        errs.append(float(np.hypot(x0 + bx - x - ex, y0 + by - y - ey)))
    return float(np.mean(errs)), float(np.max(errs)), len(errs)


def smootherstep(t: float) -> float:
    t = min(max(t, 0.0), 1.0)
    return t * t * t * (t * (6 * t - 15) + 10)


def expected_path(points: list[tuple[float, float]], n: int) -> list[tuple[float, float]]:
    """Displacement from the first point at each of ``n`` frames: constant speed along the
    polyline (arc length) with smootherstep timing (the documented motion-brush timing law)."""
    p = np.asarray(points, float)
    seg = np.linalg.norm(np.diff(p, axis=0), axis=1)
    cum = np.concatenate([[0], np.cumsum(seg)])
    out = []
    for i in range(n):
        d = smootherstep(i / (n - 1)) * cum[-1]
        k = min(int(np.searchsorted(cum, d, side="right")) - 1, len(seg) - 1)
        u = 0.0 if seg[k] == 0 else (d - cum[k]) / seg[k]
        q = p[k] + u * (p[k + 1] - p[k])
        out.append((float(q[0] - p[0, 0]), float(q[1] - p[0, 1])))
    return out


# ------------------------------------------------------------------------------ temporal metrics


def consecutive_mad(frames: list[np.ndarray]) -> np.ndarray:
    return np.array([cv2.absdiff(a, b).mean() for a, b in zip(frames, frames[1:])])


def jump_ratio(frames: list[np.ndarray]) -> float:
    """max / median of consecutive mean-abs-differences: ~1-2 for smooth motion, ≫ 3 with a jump."""
    m = consecutive_mad(frames)
    return float(m.max() / max(np.median(m), 1e-3))


def cuts(frames: list[np.ndarray], k: float = 4.0) -> list[int]:
    """Indices i where frame i → i+1 is a cut: its MAD is a local spike, > k × both neighbours."""
    m = consecutive_mad(frames)
    nb = np.maximum(np.r_[m[1:2], m[:-1]], np.r_[m[1:], m[-2:-1]])
    return [int(i) for i in np.nonzero(m > k * np.maximum(nb, 0.5))[0]]


def _flow(a: np.ndarray, b: np.ndarray, scale: float) -> np.ndarray:
    def g(img):
        return gray(cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))

    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(g(a), g(b), None)


def global_motion(a: np.ndarray, b: np.ndarray, scale: float = 0.5) -> dict:
    """Similarity fit u = s(x−cx) − r(y−cy) + tx, v = r(x−cx) + s(y−cy) + ty to the flow a → b.
    zoom_rate > 0: zooming in; (tx, ty): content shift in px/frame at full resolution."""
    F = _flow(a, b, scale)
    h, w = F.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    X, Y = (xs - w / 2).ravel(), (ys - h / 2).ravel()
    o, z = np.ones_like(X), np.zeros_like(X)
    A = np.concatenate([np.stack([X, -Y, o, z], 1), np.stack([Y, X, z, o], 1)])
    rhs = np.concatenate([F[..., 0].ravel(), F[..., 1].ravel()])
    s, r, tx, ty = np.linalg.lstsq(A, rhs, rcond=None)[0]
    return dict(zoom_rate=float(s), rot=float(r), tx=float(tx / scale), ty=float(ty / scale))


def mean_motion(frames: list[np.ndarray], samples: int = 6) -> dict:
    """``global_motion`` averaged over frame pairs sampled around the middle of the clip."""
    n = len(frames)
    idx = np.linspace(n * 0.3, n * 0.7, samples).astype(int)
    ms = [global_motion(frames[i], frames[i + 1]) for i in idx]
    return {k: float(np.mean([m[k] for m in ms])) for k in ms[0]}


def centre_drift_rms(frames: list[np.ndarray]) -> float:
    """rms of the (tx, ty) translation per frame pair: the wobble of a pure centre zoom (px/frame)."""
    ms = [global_motion(a, b) for a, b in zip(frames, frames[1:])]
    return float(np.sqrt(np.mean([m["tx"] ** 2 + m["ty"] ** 2 for m in ms])))


def ghost_residual(mid: np.ndarray, i0: np.ndarray, i1: np.ndarray, scale: float = 0.5) -> float:
    """Mean residual after flow-aligning each end to ``mid`` (the smaller of the two). Low: ``mid``
    is a coherent warp of the ends (a morph). High: double edges (a crossfade's ghosting)."""
    def g(img):
        return gray(cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    gm = g(mid)
    residuals = []
    for end in (i0, i1):
        F = dis.calc(gm, g(end), None)
        h, w = F.shape[:2]
        gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        warped = cv2.remap(g(end), gx + F[..., 0], gy + F[..., 1], cv2.INTER_LINEAR)
        residuals.append(np.abs(warped.astype(np.float32) - gm))
    return float(np.mean(np.minimum(*residuals)))


class RecordingProgress:
    """A ``Progress`` that records reports and logs, and cancels after ``cancel_after`` reports."""

    def __init__(self, cancel_after: int | None = None):
        from stillreel.engines.base import Cancelled

        self._cancelled_exc = Cancelled
        self.cancel_after = cancel_after
        self.reports: list[tuple[float, str | None]] = []
        self.logs: list[str] = []
        self.cancelled = False

    def report(self, fraction: float, message: str | None = None) -> None:
        if self.cancel_after is not None and len(self.reports) >= self.cancel_after:
            self.cancelled = True
            raise self._cancelled_exc()
        self.reports.append((fraction, message))

    def log(self, message: str, level: str = "INFO") -> None:
        self.logs.append(message)
