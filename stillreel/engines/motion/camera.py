"""Camera moves: Kling's presets, the prompt's camera phrases, and border-free per-frame views.

A move eases each parameter (zoom, view offset, yaw, pitch, roll) from a start to an end value
with smootherstep. Each frame gets one 3x3 *output → source* homography of a pinhole camera
(focal length = the longer side): ``T(zoom, offset) · K · R_yaw · R_pitch · R_roll · K⁻¹ · C``.
No border may ever show, so the pan/rotation amplitude is shrunk (binary search) until every
frame's view lies inside the source; the zoom ramp is kept, so frame 0 stays the input.

Conventions: zoom > 1 is closer; offsets are fractions of the frame (+ = the view moves right /
down, so the content moves left / up); yaw > 0 turns right, pitch > 0 looks up, roll > 0 turns
clockwise, in degrees.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np

from stillreel.engines.base import CameraPreset


@dataclass(frozen=True)
class Move:
    name: str
    zoom: tuple[float, float] = (1.0, 1.0)
    tx: tuple[float, float] = (0.0, 0.0)
    ty: tuple[float, float] = (0.0, 0.0)
    yaw: tuple[float, float] = (0.0, 0.0)
    pitch: tuple[float, float] = (0.0, 0.0)
    roll: tuple[float, float] = (0.0, 0.0)

    @property
    def is_still(self) -> bool:
        return all(a == b == (1.0 if k == "zoom" else 0.0) for k, (a, b) in self._ramps().items())

    def _ramps(self) -> dict[str, tuple[float, float]]:
        return {k: getattr(self, k) for k in ("zoom", "tx", "ty", "yaw", "pitch", "roll")}

    def scaled(self, strength: float) -> Move:
        """The same move, ``strength`` times as strong (zoom in log scale)."""
        def lin(r):
            return (r[0] * strength, r[1] * strength)
        return replace(
            self,
            zoom=(self.zoom[0] ** strength, self.zoom[1] ** strength),
            tx=lin(self.tx), ty=lin(self.ty), yaw=lin(self.yaw), pitch=lin(self.pitch), roll=lin(self.roll),
        )


STILL = Move("static")
PUSH_IN = Move("gentle push-in", zoom=(1.0, 1.12))

# Kling's definitions: down_back = "pan down + zoom out" (it cannot start on the input without
# inventing pixels, so it starts on a 1/1.3 crop and ends exactly on the input); forward_up =
# "zoom in + pan up"; right/left_turn_forward = "rotate right/left + advance".
PRESETS: dict[CameraPreset, Move] = {
    CameraPreset.DOWN_BACK: Move("down_back", zoom=(1.30, 1.00), ty=(-0.10, 0.0)),
    CameraPreset.FORWARD_UP: Move("forward_up", zoom=(1.00, 1.30), ty=(0.0, -0.10)),
    CameraPreset.RIGHT_TURN_FORWARD: Move("right_turn_forward", zoom=(1.00, 1.25), yaw=(0.0, 8.0)),
    CameraPreset.LEFT_TURN_FORWARD: Move("left_turn_forward", zoom=(1.00, 1.25), yaw=(0.0, -8.0)),
}


def strength(guidance: float) -> float:
    """fal's cfg_scale (0..1) → motion strength: 0 → 0.1 (almost still), 0.5 → 1, 1 → 1.5."""
    g = min(max(float(guidance), 0.0), 1.0)
    return 0.1 + 1.8 * g if g <= 0.5 else 1.0 + (g - 0.5)


# fal's advanced_camera_control: Kling's "simple" camera, one axis with a value in -10..10. Kling's
# own definitions: horizontal / vertical move the camera along x / y (+ is right / up); "pan"
# turns it in the vertical plane (about x, + looks up) and "tilt" in the horizontal plane (about
# y, + turns right): Kling's names, the other way round from film usage; roll + is clockwise;
# zoom + widens the field of view (the camera pulls back), − narrows it (it pushes in). As with
# the presets, a move that would show beyond the picture pushes in as it goes.
ADVANCED_LIMIT = 10.0


def advanced_move(kind: str, value: float) -> Move:
    """The move for ``advanced_camera_control`` (``kind``, ``value``); values beyond ±10 count as ±10."""
    k = max(-1.0, min(1.0, float(value) / ADVANCED_LIMIT))
    if k == 0:
        return STILL
    name = f"advanced {kind} {float(value):+g}"
    push = (1.0, 1.0 + 0.3 * abs(k))
    if kind == "zoom":
        return Move(name, zoom=push if k < 0 else (1.0 + 0.3 * k, 1.0))
    axis = {"horizontal": {"tx": (0.0, 0.12 * k)}, "vertical": {"ty": (0.0, -0.12 * k)},
            "pan": {"pitch": (0.0, 6.0 * k)}, "tilt": {"yaw": (0.0, 10.0 * k)},
            "roll": {"roll": (0.0, 10.0 * k)}}[kind]
    return Move(name, zoom=push, **axis)


# ------------------------------------------------------------------------------ prompt phrases
# Each phrase belongs to a group; the first phrase of each group found in the prompt is used and
# the groups combine ("zoom in while panning left"). Words may be inflected ("pans", "panning")
# and one adverb may sit in between ("zooms slowly in", "pans to the left").
_V = r"(?:s|es|ing|ed)?"
_GAP = r"\s+(?:\w+ly\s+)?(?:(?:to|toward|towards)\s+the\s+)?"
_STATIC = re.compile(
    r"\b(?:static|still|fixed|locked(?:[- ]off)?|stationary|steady)\s+(?:camera|shot|frame)\b"
    r"|\bcamera\s+(?:is\s+|stays\s+|remains\s+|holds\s+)?(?:static|still|fixed|stationary)\b"
    r"|\bno\s+camera\s+(?:movement|motion)\b|\blocked[- ]off\b|\btripod\b",
    re.IGNORECASE,
)
_PHRASES: list[tuple[str, str, Move]] = [
    ("zoom", rf"\b(?:zoom{_V}|push{_V}|dolly{_V}|dollies|move|moves|moving|moved){_GAP}in(?:to|ward)?\b|\bpush[- ]in\b",
     Move("zoom in", zoom=(1.0, 1.3))),
    ("zoom", rf"\b(?:zoom{_V}{_GAP}out|pull{_V}{_GAP}(?:back|out|away)|dolly{_V}{_GAP}out|dollies{_GAP}out)\b"
     r"|\bpull[- ]back\b",
     Move("zoom out", zoom=(1.3, 1.0))),
    ("horizontal", rf"\bpan{_V}n?{_V}{_GAP}left\b", Move("pan left", zoom=(1.0, 1.3), yaw=(0.0, -10.0))),
    ("horizontal", rf"\bpan{_V}n?{_V}{_GAP}right\b", Move("pan right", zoom=(1.0, 1.3), yaw=(0.0, 10.0))),
    ("horizontal", rf"\b(?:orbit{_V}|turn{_V}|rotat(?:e|es|ing|ed)|arc{_V}){_GAP}left\b",
     Move("orbit left", zoom=(1.0, 1.25), yaw=(0.0, -8.0))),
    ("horizontal", rf"\b(?:orbit{_V}|turn{_V}|rotat(?:e|es|ing|ed)|arc{_V}){_GAP}right\b",
     Move("orbit right", zoom=(1.0, 1.25), yaw=(0.0, 8.0))),
    ("vertical", rf"\btilt{_V}{_GAP}up(?:ward)?\b", Move("tilt up", zoom=(1.0, 1.3), pitch=(0.0, 6.0))),
    ("vertical", rf"\btilt{_V}{_GAP}down(?:ward)?\b", Move("tilt down", zoom=(1.0, 1.3), pitch=(0.0, -6.0))),
]
_PHRASES_RE = [(group, re.compile(rx, re.IGNORECASE), move) for group, rx, move in _PHRASES]

# The phrases a user can write, for the docs and the logs.
VOCABULARY = (
    "zoom in / push in / dolly in",
    "zoom out / pull back / dolly out",
    "pan left / pan right",
    "tilt up / tilt down",
    "orbit (or turn, rotate, arc) left / right",
    "static / still / fixed / locked-off camera, no camera movement",
)


def move_from_prompt(prompt: str | None) -> Move | None:
    """The camera move the prompt asks for; ``STILL`` for a static camera; None if it names none."""
    text = prompt or ""
    if _STATIC.search(text):
        return STILL
    found: dict[str, tuple[int, Move]] = {}
    for group, rx, move in _PHRASES_RE:
        m = rx.search(text)
        if m and (group not in found or m.start() < found[group][0]):
            found[group] = (m.start(), move)
    if not found:
        return None
    moves = [mv for _, mv in sorted(found.values(), key=lambda p: p[0])]
    # An explicit zoom phrase decides the zoom; otherwise the strongest push-in of the others.
    zoom = found["zoom"][1].zoom if "zoom" in found else max((m.zoom for m in moves), key=lambda z: z[1])
    # A zoom-out ends on the input, so the pans and tilts that go with it run backwards and end
    # at rest there too (they could not start on the input without showing borders).
    order = (lambda r: r[::-1]) if zoom[0] > zoom[1] else (lambda r: r)
    return Move(
        " + ".join(m.name for m in moves),
        zoom=zoom,
        yaw=order(_sum(m.yaw for m in moves)),
        pitch=order(_sum(m.pitch for m in moves)),
        roll=order(_sum(m.roll for m in moves)),
    )


def _sum(ranges) -> tuple[float, float]:
    ranges = list(ranges)
    return sum(r[0] for r in ranges), sum(r[1] for r in ranges)


# ------------------------------------------------------------------------------ per-frame views


def _eased(n: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(1)
    return t * t * t * (t * (6 * t - 15) + 10)


def _rotations(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    n = yaw.shape[0]
    ay, ap, ar = np.radians(yaw), np.radians(pitch), np.radians(roll)
    r = np.zeros((3, n, 3, 3))
    cy, sy, cp, sp, cr, sr = np.cos(ay), np.sin(ay), np.cos(ap), np.sin(ap), np.cos(ar), np.sin(ar)
    r[0, :, 0, 0], r[0, :, 0, 2], r[0, :, 1, 1], r[0, :, 2, 0], r[0, :, 2, 2] = cy, sy, 1, -sy, cy
    r[1, :, 0, 0], r[1, :, 1, 1], r[1, :, 1, 2], r[1, :, 2, 1], r[1, :, 2, 2] = 1, cp, -sp, sp, cp
    r[2, :, 0, 0], r[2, :, 0, 1], r[2, :, 1, 0], r[2, :, 1, 1], r[2, :, 2, 2] = cr, -sr, sr, cr, 1
    return r[0] @ r[1] @ r[2]


def view_matrices(width: int, height: int, n: int, move: Move, alpha: float = 1.0) -> np.ndarray:
    """(n, 3, 3) output → source homographies; ``alpha`` scales offsets and rotations only."""
    e = _eased(n)
    p = {k: a + (b - a) * e for k, (a, b) in move._ramps().items()}
    f = float(max(width, height))
    cx, cy = (width - 1) / 2, (height - 1) / 2
    k = np.diag([f, f, 1.0])
    k_inv = np.diag([1 / f, 1 / f, 1.0])
    centre = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1.0]])
    rot = _rotations(alpha * p["yaw"], alpha * p["pitch"], alpha * p["roll"])
    t = np.zeros((n, 3, 3))
    t[:, 0, 0] = t[:, 1, 1] = 1.0 / p["zoom"]
    t[:, 0, 2] = cx + alpha * p["tx"] * width
    t[:, 1, 2] = cy + alpha * p["ty"] * height
    t[:, 2, 2] = 1.0
    m = t @ k @ rot @ k_inv @ centre
    return m / m[:, 2:3, 2:3]


def _inside(mats: np.ndarray, width: int, height: int) -> bool:
    corners = np.array([[0, width - 1, width - 1, 0], [0, 0, height - 1, height - 1], [1, 1, 1, 1.0]])
    q = mats @ corners
    x, y = q[:, 0] / q[:, 2], q[:, 1] / q[:, 2]
    tol = 0.5  # up to half a pixel beyond the edge pixel's centre is still that pixel
    return bool((q[:, 2] > 0).all() and x.min() >= -tol and y.min() >= -tol
                and x.max() <= width - 1 + tol and y.max() <= height - 1 + tol)


@dataclass(frozen=True)
class CameraPath:
    matrices: np.ndarray  # (n, 3, 3), output → source, luma pixels
    alpha: float  # share of the requested pan/rotation that fits without borders


def camera_path(width: int, height: int, n: int, move: Move) -> CameraPath:
    """Per-frame views for ``move`` that never show a border: keeps the zoom ramp and shrinks the
    pan/rotation amplitude to the largest that fits (zoom ≥ 1 always fits, so this terminates)."""
    if _inside(view_matrices(width, height, n, move), width, height):
        return CameraPath(view_matrices(width, height, n, move), 1.0)
    lo, hi = 0.0, 1.0
    for _ in range(24):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _inside(view_matrices(width, height, n, move, mid), width, height) else (lo, mid)
    return CameraPath(view_matrices(width, height, n, move, lo), lo)


def describe(move: Move, alpha: float = 1.0) -> str:
    z0, z1 = move.zoom
    text = f"{move.name} (zoom {z0:.2f}→{z1:.2f}"
    if any(move.yaw + move.pitch + move.roll + move.tx + move.ty):
        text += f", {alpha:.0%} of the requested pan/rotation fits without borders"
    return text + ")"


__all__ = [
    "Move", "STILL", "PUSH_IN", "PRESETS", "VOCABULARY", "strength", "move_from_prompt",
    "view_matrices", "camera_path", "CameraPath", "describe",
]
