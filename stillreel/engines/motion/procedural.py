"""Text-to-video's start frame: a procedural picture made from the prompt and the seed. Not generative.

The motion engine cannot draw what a prompt describes. For a request without any image it makes
a deterministic stand-in instead, which the prompt's camera phrases then animate:

- the **palette** comes from a hash of the prompt alone, so one prompt keeps its colours;
- the **layout** (horizon, hills, shapes, texture) comes from the seed and the prompt;
- texture exists at every scale (multi-octave noise, hard-edged shapes, a fine grain), because a
  camera move over a flat gradient would look like no move at all, and the objective checks
  (optical flow) need detail to measure.

Everything is numpy + OpenCV with explicitly seeded generators: the same (prompt, seed, size)
gives the same pixels.
"""

from __future__ import annotations

import colorsys
import hashlib

import cv2
import numpy as np

# Palette schemes: hue offsets (in turns) of the five colours from the prompt's base hue.
_SCHEMES = (
    (0.0, 0.04, 0.08, 0.5, 0.54),  # complementary
    (0.0, 0.08, 0.16, 0.24, 0.32),  # analogous
    (0.0, 0.33, 0.66, 0.05, 0.38),  # triadic
    (0.0, 0.45, 0.55, 0.02, 0.5),  # split complementary
)


def _digest(*parts) -> bytes:
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()


def _rng(*parts) -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(_digest(*parts)[:8], "little"))


def palette(prompt: str) -> np.ndarray:
    """Five RGB colours (uint8, dark → light) from a hash of the prompt (case and spacing ignored)."""
    d = _digest("palette", " ".join((prompt or "").lower().split()))
    base = d[0] / 256
    scheme = _SCHEMES[d[1] % len(_SCHEMES)]
    colours = []
    for k, offset in enumerate(scheme):
        sat = 0.35 + 0.55 * d[2 + k] / 255
        val = 0.18 + 0.78 * (k + d[8 + k] / 255) / len(scheme)  # a ramp, so the LUT has light and dark
        colours.append(colorsys.hsv_to_rgb((base + offset) % 1.0, sat, val))
    out = np.array(colours) * 255
    return np.round(out[np.argsort(out @ [0.2126, 0.7152, 0.0722])]).astype(np.uint8)


def _lut(colours: np.ndarray) -> np.ndarray:
    """A 256-entry RGB lookup table through the colours (dark → light)."""
    x = np.linspace(0, 1, len(colours))
    t = np.linspace(0, 1, 256)
    return np.stack([np.interp(t, x, colours[:, c]) for c in range(3)], axis=1).astype(np.uint8)


def _noise(rng: np.random.Generator, width: int, height: int, octaves: int = 8, persistence: float = 0.6) -> np.ndarray:
    """Multi-octave value noise in 0..1, float32 (height, width): from 2 cells on the long side up
    to 2**octaves, so every scale has detail whatever the frame size."""
    acc = np.zeros((height, width), np.float32)
    amp, long_side = 1.0, max(width, height)
    for octave in range(octaves):
        cells = 2 ** (octave + 1)
        gw, gh = max(2, round(cells * width / long_side) + 1), max(2, round(cells * height / long_side) + 1)
        grid = rng.standard_normal((gh, gw)).astype(np.float32)
        acc += amp * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        amp *= persistence
    lo, hi = float(acc.min()), float(acc.max())
    return (acc - lo) / max(hi - lo, 1e-6)


def _ridge(rng: np.random.Generator, width: int, points: int) -> np.ndarray:
    """A smooth random 1D curve in -1..1 over ``width`` columns (a hill line)."""
    knots = rng.uniform(-1, 1, points).astype(np.float32)[None, :]
    return cv2.resize(knots, (width, 1), interpolation=cv2.INTER_CUBIC)[0]


def start_frame(prompt: str, seed: int, width: int, height: int) -> np.ndarray:
    """The procedural RGB start frame (uint8, (height, width, 3)) for ``prompt`` and ``seed``."""
    colours = palette(prompt)
    lut = _lut(colours)
    rng = _rng("layout", seed, prompt or "")
    unit = min(width, height)
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]

    # Sky: a vertical gradient (light at the top) broken up by cloud-like noise.
    cloud = _noise(rng, width, height)
    field = 0.55 * (1.0 - y) + 0.45 * cloud
    # Layered hills below a seeded horizon, each darker and more textured than the one behind.
    horizon = rng.uniform(0.35, 0.6)
    rows = np.arange(height, dtype=np.float32)[:, None]
    for layer in range(3):
        line = (horizon + 0.12 * layer + 0.08 * _ridge(rng, width, int(rng.integers(4, 9)))) * height
        ground = rows >= line[None, :]
        texture = _noise(rng, width, height, persistence=0.7)
        field = np.where(ground, 0.45 - 0.13 * layer + 0.35 * (texture - 0.5), field)
    img = cv2.LUT(cv2.merge([np.clip(field * 255, 0, 255).astype(np.uint8)] * 3), lut[None, :, :])

    # Hard-edged shapes (discs, ellipses, blocks) in palette colours, shaded by their own noise.
    shade = 0.7 + 0.6 * _noise(rng, width, height, persistence=0.75)
    for _ in range(int(rng.integers(10, 18))):
        mask = np.zeros((height, width), np.uint8)
        cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(rng.uniform(0.03, 0.16) * unit) + 2
        kind = int(rng.integers(0, 3))
        if kind == 0:
            cv2.circle(mask, (cx, cy), size, 255, -1, cv2.LINE_8)
        elif kind == 1:
            cv2.ellipse(mask, (cx, cy), (size, max(2, size // 2)), float(rng.uniform(0, 180)), 0, 360, 255, -1)
        else:
            cv2.rectangle(mask, (cx - size, cy - size // 2), (cx + size, cy + size // 2), 255, -1)
        colour = colours[int(rng.integers(0, len(colours)))].astype(np.float32)
        sel = mask > 0
        img[sel] = np.clip(colour[None, :] * shade[sel][:, None], 0, 255).astype(np.uint8)
        cv2.circle(img, (cx, cy), max(1, size // 6), tuple(int(c) for c in lut[255 - int(colour.mean())]), -1)

    # A fine grain (about 3 px at 720p) so that even small camera moves are visible everywhere.
    grain_rng = _rng("grain", seed, prompt or "")
    gw, gh = max(2, width // 3), max(2, height // 3)
    grain = cv2.resize(grain_rng.standard_normal((gh, gw)).astype(np.float32), (width, height),
                       interpolation=cv2.INTER_LINEAR)
    out = img.astype(np.float32) + 14.0 * grain[:, :, None]
    return np.clip(out, 0, 255).astype(np.uint8)
