"""The soundtrack: a procedural ambience that follows the picture's motion. Not generative.

No sound is generated from the prompt and nothing is spoken: the track is seeded noise, shaped
into a dark room tone and a brighter "air" band, plus a soft drone of three partials. Per frame,
the picture's motion (the camera's eased speed, the morph's progress, a burst at each hard cut)
sets how loud and how bright the ambience is, so the sound swells while the camera moves and
settles when it stops. The same (seed, motion) gives the same samples.
"""

from __future__ import annotations

import hashlib

import numpy as np

from stillreel.engines.base import Audio

SAMPLE_RATE = 48000
PEAK = 0.35  # about -9 dBFS: an ambience, not a soundtrack that shouts


def _rng(seed: int, salt: str) -> np.random.Generator:
    digest = hashlib.sha256(f"motion-audio:{seed}:{salt}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _band(noise: np.ndarray, low_hz: float, high_hz: float) -> np.ndarray:
    """``noise`` band-limited by a soft spectral mask (FFT: numpy only, exact, deterministic)."""
    spectrum = np.fft.rfft(noise)
    f = np.fft.rfftfreq(noise.shape[-1], 1 / SAMPLE_RATE)
    mask = 1 / (1 + (low_hz / np.maximum(f, 1e-3)) ** 2) / (1 + (f / high_hz) ** 2)
    out = np.fft.irfft(spectrum * mask, n=noise.shape[-1])
    return out / (np.abs(out).max() + 1e-9)


def soundtrack(activity: np.ndarray, fps: int, seed: int) -> Audio:
    """Stereo float32 audio of exactly ``len(activity) / fps`` seconds; ``activity`` (0..1 per
    frame) drives loudness and brightness."""
    n = round(len(activity) * SAMPLE_RATE / fps)
    rng = _rng(seed, "noise")
    white = rng.standard_normal((2, n))
    # Partly correlated channels: a wide but not hollow stereo image.
    white = np.stack([white[0] + 0.5 * white[1], white[1] + 0.5 * white[0]])
    dark = _band(white, 40.0, 400.0)
    bright = _band(white, 300.0, 5000.0)
    t = np.arange(n) / SAMPLE_RATE
    frame_t = (np.arange(len(activity)) + 0.5) / fps
    a = np.interp(t, frame_t, np.clip(activity, 0.0, 1.0)).astype(np.float64)
    chord = _rng(seed, "drone").choice([55.0, 61.7, 65.4, 73.4, 82.4], 3, replace=False)
    drone = sum(np.sin(2 * np.pi * f * t + k) / (k + 1) for k, f in enumerate(sorted(chord)))
    drone *= 0.5 + 0.5 * np.sin(2 * np.pi * t / 7.0) ** 2  # a slow breath
    mix = (0.2 + 0.8 * a) * ((1 - a) * dark + a * bright) + 0.15 * drone
    mix *= PEAK / (np.abs(mix).max() + 1e-9)
    fade = min(n // 2, SAMPLE_RATE // 50)  # 20 ms fades: no click at either end
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        mix[:, :fade] *= ramp
        mix[:, n - fade:] *= ramp[::-1]
    return Audio(mix.astype(np.float32), SAMPLE_RATE)


def eased_speed(frames: int) -> np.ndarray:
    """The speed of a smootherstep move, 0 at both ends and 1 at the middle."""
    t = np.linspace(0.0, 1.0, frames) if frames > 1 else np.zeros(1)
    return 16 * t * t * (1 - t) * (1 - t)
