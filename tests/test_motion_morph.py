"""End frame: a flow-guided morph that lands exactly on the end image, is not a crossfade, and
falls back to a crossfade when the two images are unrelated."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from videocheck import decode, fractal_image, ghost_residual, jump_ratio, luma_psnr, render, ssim

from stillreel.engines.base import CameraPreset, EngineError, GenerationRequest, NullProgress, Shot
from stillreel.engines.motion import create
from stillreel.engines.motion.geometry import smootherstep
from stillreel.media.encode import rgb_to_yuv420p

W, H = 1024, 576


def _busy(seed: int) -> np.ndarray:
    """Texture plus many hard edges, like a photo: a crossfade of two views shows double edges."""
    img = fractal_image(W, H, seed)
    rng = np.random.default_rng(seed + 1)
    for _ in range(150):
        x, y, s = int(rng.integers(0, W)), int(rng.integers(0, H)), int(rng.integers(8, 60))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        cv2.rectangle(img, (x, y), (x + s, y + s // 2), colour, -1 if rng.random() < 0.5 else 2)
    return img


START = _busy(7)


def _viewpoint_shift(img: np.ndarray) -> np.ndarray:
    """A related view: shifted, slightly rotated and scaled, with a smooth local wobble."""
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 2.0, 1.04)
    m[0, 2] += 60
    m[1, 2] -= 20
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    wob = 6 * np.sin(gx / 90) * np.cos(gy / 70)
    mx = (m[0, 0] * gx + m[0, 1] * gy + m[0, 2] + wob).astype(np.float32)
    my = (m[1, 0] * gx + m[1, 1] * gy + m[1, 2] - wob).astype(np.float32)
    return cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


END = _viewpoint_shift(START)


def half(img: np.ndarray) -> np.ndarray:
    return cv2.resize(img, (640, 360), interpolation=cv2.INTER_AREA)


def morph_request(end=END, seconds=3) -> GenerationRequest:
    return GenerationRequest(START, (Shot("the camera moves", seconds),), seconds, end_image=end)


@pytest.fixture(scope="module")
def morph(tmp_path_factory):
    path, clip = render(create({"size_scale": 0.5}), morph_request(), tmp_path_factory.mktemp("morph") / "m.mp4")
    return decode(path), clip


def test_first_and_last_frames(morph):
    frames, _ = morph
    # Luma PSNR: the busy test image's saturated hard edges lose colour to 4:2:0 subsampling.
    assert luma_psnr(frames[0], half(START)) >= 30
    assert luma_psnr(frames[-1], half(END)) >= 30 and ssim(frames[-1], half(END)) >= 0.95
    # Negative control: the start image is not the end image by the same measures.
    assert luma_psnr(half(START), half(END)) < 30 and ssim(half(START), half(END)) < 0.95


def test_morph_is_not_a_crossfade(morph):
    frames, clip = morph
    mid = frames[len(frames) // 2]
    assert clip.info["end_frame"] == "optical-flow morph" and clip.info["flow_trust"] == 1.0
    assert ghost_residual(mid, frames[0], frames[-1]) <= 6
    # Negative control: a plain crossfade of the same ends shows double edges.
    crossfade = cv2.addWeighted(frames[0], 0.5, frames[-1], 0.5, 0)
    assert ghost_residual(crossfade, frames[0], frames[-1]) > 6


def test_morph_has_no_jumps(morph):
    frames, _ = morph
    assert jump_ratio(frames) <= 3
    assert jump_ratio(frames[:30] + frames[45:]) > 3  # control


def test_unrelated_images_fall_back_to_a_crossfade():
    other = _busy(123)
    clip = create({"size_scale": 0.25}).generate(morph_request(end=other), NullProgress())
    frames = list(clip.frames)
    assert clip.info["flow_trust"] == 0.0 and clip.info["end_frame"].startswith("crossfade")
    a, b = rgb_to_yuv420p(cv2.resize(START, (320, 180), interpolation=cv2.INTER_AREA)), rgb_to_yuv420p(
        cv2.resize(other, (320, 180), interpolation=cv2.INTER_AREA))
    i = len(frames) // 3
    t = smootherstep(i / (len(frames) - 1))
    assert cv2.absdiff(frames[i], cv2.addWeighted(a, 1 - t, b, t, 0)).max() <= 1
    assert np.array_equal(frames[-1], b) and np.array_equal(frames[0], a)


def test_related_images_trust_the_flow():
    # The control for the fallback: the related pair keeps full trust even at a quarter size.
    clip = create({"size_scale": 0.25}).generate(morph_request(seconds=1), NullProgress())
    for _ in clip.frames:
        pass
    assert clip.info["flow_trust"] == 1.0


def test_end_image_of_another_shape_is_cover_cropped():
    square = cv2.resize(END, (700, 700))  # any size: cover-cropped to the output like the input
    clip = create({"size_scale": 0.25}).generate(morph_request(end=square, seconds=1), NullProgress())
    *_, last = clip.frames
    expected = cv2.resize(square, (320, 320), interpolation=cv2.INTER_AREA)[70:250]  # centre 320x180
    assert np.array_equal(last, rgb_to_yuv420p(expected))


def test_end_image_with_camera_control_is_refused():
    req = GenerationRequest(START, (Shot("x", 3),), 3, end_image=END, camera=CameraPreset.FORWARD_UP)
    with pytest.raises(EngineError) as err:
        create({}).generate(req, NullProgress())
    assert err.value.loc == ("camera",) and "end image" in err.value.message
