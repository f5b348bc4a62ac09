"""Motion engine camera: Kling presets, prompt phrases, smoothness, borders, sizes, first frame.

Checks run on decoded MP4s (engine → encoder → PyAV), each with a negative control that fails
it. Clips are 3 s at half size (size_scale 0.5, 640x360) to keep the suite quick.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from videocheck import (
    centre_drift_rms,
    decode,
    encode_frames,
    fractal_image,
    jump_ratio,
    mean_motion,
    psnr,
    render,
    smootherstep,
)

from stillreel.engines.base import Aspect, CameraPreset, GenerationRequest, NullProgress, Shot
from stillreel.engines.motion import camera, create
from stillreel.engines.motion.camera import camera_path, move_from_prompt, view_matrices

IMG = fractal_image(1024, 576, 1)
SMALL = cv2.resize(IMG, (640, 360), interpolation=cv2.INTER_AREA)  # the cover-crop at half size


def request(prompt="a quiet landscape", seconds=3, **kw) -> GenerationRequest:
    return GenerationRequest(IMG, (Shot(prompt, seconds),), seconds, **kw)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Decoded frames of one clip per camera, rendered once for the module."""
    engine = create({"size_scale": 0.5})
    out = tmp_path_factory.mktemp("camera")
    cases = {p.value: request(camera=p) for p in CameraPreset}
    cases["static"] = request("static camera, leaves rustle")
    cases["zoom in"] = request("the camera slowly zooms in")
    cases["gentle"] = request("a quiet landscape")
    return {name: decode(render(engine, req, out / f"{name}.mp4")[0]) for name, req in cases.items()}


# Flow signs per preset (content motion, px/frame at 640x360): zoom_rate > 0 zooms in; tx/ty > 0
# moves the content right/down. Kling: down_back = pan down + zoom out, forward_up = zoom in + pan
# up, right/left_turn_forward = rotate right/left + advance.
def direction_ok(name: str, m: dict) -> bool:
    return {
        "down_back": m["zoom_rate"] < -1e-3 and m["ty"] < -0.3,
        "forward_up": m["zoom_rate"] > 1e-3 and m["ty"] > 0.3,
        "right_turn_forward": m["tx"] < -0.5 and m["zoom_rate"] > 1e-3,
        "left_turn_forward": m["tx"] > 0.5 and m["zoom_rate"] > 1e-3,
        "zoom in": m["zoom_rate"] > 1e-3 and abs(m["tx"]) < 0.1 and abs(m["ty"]) < 0.1,
    }[name]


@pytest.mark.parametrize("name", [p.value for p in CameraPreset] + ["zoom in"])
def test_camera_direction_from_optical_flow(clips, name):
    assert direction_ok(name, mean_motion(clips[name]))
    # Negative control: the static clip fails every direction check.
    assert not direction_ok(name, mean_motion(clips["static"]))


def test_default_camera_is_a_gentle_push_in(clips):
    gentle, strong = mean_motion(clips["gentle"]), mean_motion(clips["zoom in"])
    assert 1e-4 < gentle["zoom_rate"] < strong["zoom_rate"]


def test_zoom_has_no_jitter(clips, tmp_path):
    assert centre_drift_rms(clips["zoom in"]) <= 0.1
    # Negative control: a zoompan-style zoom (integer crop positions) wobbles.
    frames = []
    for i in range(72):
        z = 1 + 0.3 * smootherstep(i / 71)
        w, h = round(640 / z), round(360 / z)
        x, y = (640 - w) // 2, (360 - h) // 2
        frames.append(cv2.resize(SMALL[y : y + h, x : x + w], (640, 360), interpolation=cv2.INTER_LINEAR))
    assert centre_drift_rms(decode(encode_frames(frames, tmp_path / "jitter.mp4"))) > 0.1


@pytest.mark.parametrize("name", ["forward_up", "right_turn_forward", "zoom in"])
def test_no_frame_jumps(clips, name):
    assert jump_ratio(clips[name]) <= 3
    # Negative control: the same clip with a jump (frames 30..40 skipped) fails.
    frames = clips[name]
    assert jump_ratio(frames[:30] + frames[40:]) > 3


def test_first_frame_is_the_input(clips):
    for name in ("forward_up", "right_turn_forward", "left_turn_forward", "zoom in", "static"):
        assert psnr(clips[name][0], SMALL) >= 30, name
    # down_back cannot start on the input without inventing pixels: it ends on it instead, and its
    # first frame is the negative control of this check.
    assert psnr(clips["down_back"][0], SMALL) < 30
    assert psnr(clips["down_back"][-1], SMALL) >= 30


def test_static_camera_is_still(clips):
    frames = clips["static"]
    assert max(cv2.absdiff(frames[0], f).mean() for f in frames) < 1.0
    assert max(cv2.absdiff(frames[0], f).mean() for f in clips["zoom in"]) > 5  # control


def test_cfg_scale_sets_motion_strength(tmp_path):
    engine = create({"size_scale": 0.25})
    rates = {}
    for g in (0.0, 1.0):
        path, _ = render(engine, request("zoom in", guidance=g), tmp_path / f"g{g}.mp4")
        rates[g] = mean_motion(decode(path))["zoom_rate"]
    assert 0 < rates[0.0] < rates[1.0] / 5


@pytest.mark.parametrize("move", list(camera.PRESETS.values()) + [
    move_from_prompt(p) for p in ("pan left", "pan right", "tilt up", "tilt down", "orbit left", "zoom out and tilt up")
])
@pytest.mark.parametrize("size", [(1280, 720), (720, 1280), (960, 960)])
@pytest.mark.parametrize("power", [0.1, 1.0, 1.5])
def test_no_border_ever_shows(move, size, power):
    w, h = size
    path = camera_path(w, h, 72, move.scaled(power))
    corners = np.array([[0, w - 1, w - 1, 0], [0, 0, h - 1, h - 1], [1, 1, 1, 1.0]])
    q = path.matrices @ corners
    x, y = q[:, 0] / q[:, 2], q[:, 1] / q[:, 2]
    assert x.min() >= -0.5 and y.min() >= -0.5 and x.max() <= w - 0.5 and y.max() <= h - 0.5
    assert path.alpha > 0.2  # most of the requested motion survives
    # Frame 0 is the input for moves that start at zoom 1, the last frame for zoom-outs.
    rest = 0 if move.zoom[0] <= move.zoom[1] else -1
    assert np.allclose(path.matrices[rest], np.eye(3), atol=1e-9)


def test_border_check_catches_an_unconstrained_pan():
    # Negative control for the check above: the requested pan without the amplitude search.
    m = view_matrices(1280, 720, 72, move_from_prompt("pan left"))
    q = m @ np.array([[0, 1279, 1279, 0], [0, 0, 719, 719], [1, 1, 1, 1.0]])
    assert (q[:, 0] / q[:, 2]).min() < -0.5 or (q[:, 0] / q[:, 2]).max() > 1279.5


@pytest.mark.parametrize("prompt, name", [
    ("The camera slowly zooms in on the lighthouse", "zoom in"),
    ("push in toward the door", "zoom in"),
    ("pull back to reveal the city", "zoom out"),
    ("the camera pans to the left across the bay", "pan left"),
    ("panning right", "pan right"),
    ("tilt up to the sky", "tilt up"),
    ("tilts down", "tilt down"),
    ("orbit right around the statue", "orbit right"),
    ("turn left", "orbit left"),
    ("zoom in while panning left", "zoom in + pan left"),
    ("static camera, the flag waves", "static"),
    ("locked-off shot of a busy street", "static"),
])
def test_prompt_camera_vocabulary(prompt, name):
    assert move_from_prompt(prompt).name == name


@pytest.mark.parametrize("prompt", ["a still life of fruit", "a cat on a sofa", "panorama of hills", ""])
def test_prompts_without_camera_phrases(prompt):
    assert move_from_prompt(prompt) is None


@pytest.mark.parametrize("size, aspect, expected", [
    ((1024, 576), Aspect.LANDSCAPE, (1280, 720)),
    ((1024, 576), Aspect.PORTRAIT, (720, 1280)),
    ((1024, 576), Aspect.SQUARE, (960, 960)),
    ((1024, 576), None, (1280, 720)),
    ((600, 1000), None, (720, 1280)),
    ((800, 760), None, (960, 960)),
    ((1024, 768), None, (1280, 720)),  # 4:3 ties between 16:9 and 1:1: the orientation wins
])
def test_output_size_per_aspect_ratio(size, aspect, expected):
    w, h = size
    req = GenerationRequest(fractal_image(w, h, 2), (Shot("x", 3),), 3, aspect=aspect)
    clip = create({}).generate(req, NullProgress())
    assert (clip.width, clip.height, clip.frame_count, clip.fps) == (*expected, 72, 24)


def test_cover_crop_never_stretches():
    # A circle in a square input stays a circle in a 16:9 output (cropped, not squeezed).
    img = np.full((600, 600, 3), 40, np.uint8)
    cv2.circle(img, (300, 300), 150, (250, 250, 250), -1)
    req = GenerationRequest(img, (Shot("static camera", 1),), 1, aspect=Aspect.LANDSCAPE)
    clip = create({"size_scale": 0.5}).generate(req, NullProgress())
    first = next(iter(clip.frames))[: clip.height]  # the Y plane of frame 0
    clip.frames.close()
    x, y, w, h = cv2.boundingRect((first > 128).astype(np.uint8))
    assert abs(w / h - 1) < 0.02 and h == pytest.approx(300 * 640 / 600, abs=3)


def test_resize_fast_path_matches_the_warp():
    from stillreel.engines.motion.geometry import Padded, resize_warp, warp_i420
    from stillreel.media.encode import rgb_to_yuv420p

    src = rgb_to_yuv420p(fractal_image(640, 360, 8))
    padded = Padded(src)
    mats = camera_path(640, 360, 48, move_from_prompt("zoom in")).matrices
    fast = 0
    for m in mats:
        out = resize_warp(padded, m)
        if out is not None:
            fast += 1
            assert cv2.absdiff(out, warp_i420(src, m)).max() <= 3
            # Control: half a pixel off is caught by the same comparison.
            off = m.copy()
            off[0, 2] += 0.5
            assert cv2.absdiff(out, warp_i420(src, off)).max() > 3
    assert fast >= len(mats) // 2
    # Rotations and near-unit zooms are not for the fast path.
    assert resize_warp(padded, camera_path(640, 360, 48, move_from_prompt("turn left")).matrices[30]) is None
    assert resize_warp(padded, np.diag([0.999, 0.999, 1.0])) is None


def test_zoom_frames_are_the_path_chosen_for_this_opencv_and_repeat_exactly():
    # The resize path or warpAffine is chosen by OpenCV version alone (geometry.RESIZE_BEATS_WARP),
    # never by a timing: the same request gives the same frames, and they are the chosen path's.
    from stillreel.engines.motion import geometry
    from stillreel.engines.motion.scene import Scene

    def frames():
        s = Scene(lambda: SMALL, 48, move_from_prompt("zoom in"))
        s.prepare()
        return s, [s.render(i) for i in range(48)]

    scene, a = frames()
    _, b = frames()
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    resized = [geometry.resize_warp(geometry.Padded(scene.source), m) for m in scene.path.matrices]
    for frame, m, r in zip(a[1:], scene.path.matrices[1:], resized[1:]):
        want = r if geometry.RESIZE_BEATS_WARP and r is not None else geometry.warp_i420(scene.source, m)
        assert np.array_equal(frame, want)
    # Control: the two paths do differ, so the comparison above can tell which one ran.
    k = next(i for i, r in enumerate(resized) if r is not None)
    assert not np.array_equal(resized[k], geometry.warp_i420(scene.source, scene.path.matrices[k]))


def test_a_static_hold_is_the_same_read_only_frame(tmp_path):
    from stillreel.engines.base import Clip
    from stillreel.engines.motion.camera import STILL
    from stillreel.engines.motion.scene import Scene
    from stillreel.media.encode import encode

    s = Scene(lambda: SMALL, 24, STILL)
    s.prepare()
    first, later = s.render(0), s.render(23)
    assert np.array_equal(first, later) and np.array_equal(first, s.source)
    with pytest.raises(ValueError):  # a consumer that writes into it fails instead of corrupting the still
        later[0, 0] = 0
    encode(Clip(24, 640, 360, 2, iter([first, later]), "yuv420p"), tmp_path / "hold.mp4")  # read-only is fine
    assert psnr(decode(tmp_path / "hold.mp4")[1], SMALL) >= 30


# fal's advanced_camera_control, as Kling defines its axes: horizontal/vertical move the camera
# (+ right / up), "pan" turns it about x (+ up), "tilt" about y (+ right), zoom + widens the view.
# Content motion (flow) is the opposite of the camera's.
ADVANCED = {
    ("horizontal", 6): lambda m: m["tx"] < -0.3,
    ("horizontal", -6): lambda m: m["tx"] > 0.3,
    ("vertical", 6): lambda m: m["ty"] > 0.3,
    ("vertical", -6): lambda m: m["ty"] < -0.3,
    ("tilt", 6): lambda m: m["tx"] < -0.3,
    ("tilt", -6): lambda m: m["tx"] > 0.3,
    ("pan", 6): lambda m: m["ty"] > 0.3,
    ("pan", -6): lambda m: m["ty"] < -0.3,
    ("zoom", -6): lambda m: m["zoom_rate"] > 1e-3,
    ("zoom", 6): lambda m: m["zoom_rate"] < -1e-3,
}


@pytest.mark.parametrize("kind,value", list(ADVANCED))
def test_advanced_camera_control_moves_along_klings_axes(kind, value, tmp_path, clips):
    engine = create({"size_scale": 0.5})
    progress = NullProgress()
    path, clip = render(engine, request(advanced_camera=(kind, float(value))), tmp_path / "a.mp4", progress)
    motion = mean_motion(decode(path))
    assert ADVANCED[(kind, value)](motion), motion
    assert not ADVANCED[(kind, value)](mean_motion(clips["static"]))  # negative control
    assert clip.info["camera"].startswith(f"advanced {kind} {value:+g}")


def test_advanced_camera_roll_turns_and_a_zero_value_holds_still():
    from stillreel.engines.motion.camera import STILL, advanced_move

    roll = camera_path(640, 360, 48, advanced_move("roll", 5))
    angle = np.degrees(np.arctan2(roll.matrices[-1][1, 0], roll.matrices[-1][0, 0]))
    assert angle > 1 and roll.alpha > 0.2  # the view turns, border-free
    assert advanced_move("zoom", 0) is STILL
    beyond, limit = advanced_move("horizontal", 25), advanced_move("horizontal", 10)
    assert (beyond.tx, beyond.zoom) == (limit.tx, limit.zoom)  # counted as Kling's ±10


def test_advanced_camera_values_beyond_klings_range_are_logged():
    from stillreel.engines.motion.render_plan import build_plan

    plan = build_plan(request(advanced_camera=("zoom", -40.0)), 0.5)
    assert any("beyond Kling's ±10" in note for note in plan.notes)
    both = build_plan(request(camera=CameraPreset.FORWARD_UP, advanced_camera=("roll", 3.0)), 0.5)
    assert any("advanced_camera_control (roll +3) is ignored" in note for note in both.notes)
