"""Motion brush: dynamic masks follow their trajectories, the static region holds, the hole is
filled with texture, and masks that cannot work are refused with a clear 422."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from videocheck import (
    decode,
    disc_mask,
    expected_path,
    fractal_image,
    jump_ratio,
    render,
    static_region,
    track,
    with_object,
)

from stillreel.engines.base import (
    Aspect,
    BrushPath,
    CameraPreset,
    EngineError,
    GenerationRequest,
    NullProgress,
    Shot,
)
from stillreel.engines.motion import create

W, H = 1024, 576  # input; rendered at size_scale 0.5 → 640x360, a plain 0.625 resize
S = 640 / W
OBJ = disc_mask(W, H, (250, 250), 60)
IMG = with_object(fractal_image(W, H, 4), OBJ)
TRAJ = ((250.0, 250.0), (450.0, 200.0), (650.0, 300.0))  # input pixels, top-left origin
STATIC = np.zeros((H, W), np.uint8)
STATIC[380:540, 760:980] = 255


def brush_request(traj=TRAJ, static=STATIC, seconds=3, **kw) -> GenerationRequest:
    return GenerationRequest(IMG, (Shot("a ball rolls", seconds),), seconds, static_mask=static,
                             dynamic_masks=(BrushPath(OBJ, traj),), **kw)


def to_out(mask: np.ndarray) -> np.ndarray:
    return np.where(cv2.resize(mask, (640, 360), interpolation=cv2.INTER_LINEAR) >= 128, 255, 0).astype(np.uint8)


@pytest.fixture(scope="module")
def brush(tmp_path_factory):
    path, clip = render(create({"size_scale": 0.5}), brush_request(), tmp_path_factory.mktemp("brush") / "b.mp4")
    return decode(path), clip


@pytest.fixture(scope="module")
def camera_clip(tmp_path_factory):
    req = GenerationRequest(IMG, (Shot("x", 3),), 3, camera=CameraPreset.FORWARD_UP)
    return decode(render(create({"size_scale": 0.5}), req, tmp_path_factory.mktemp("cam") / "c.mp4")[0])


def test_brush_region_tracks_its_trajectory(brush):
    frames, _ = brush
    expected = [(dx * S, dy * S) for dx, dy in expected_path(list(TRAJ), len(frames))]
    mean, worst, count = track(frames, frames[0], to_out(OBJ), expected)
    assert count == len(frames) and mean <= 2 and worst <= 4
    # Negative control: the same frames against the path walked backwards.
    mean, worst, _ = track(frames, frames[0], to_out(OBJ), expected[::-1])
    assert mean > 2


def test_static_region_does_not_move(brush, camera_clip):
    frames, clip = brush
    _, p999, mean = static_region(frames, frames[0], to_out(STATIC))
    assert p999 <= 10 and mean <= 1
    assert clip.info["static_region"] == "held still"
    # Negative control: the same region in a clip whose camera moves.
    _, p999, mean = static_region(camera_clip, camera_clip[0], to_out(STATIC))
    assert p999 > 10 and mean > 1


def test_static_region_is_exact_in_the_raw_frames_even_with_a_camera_move():
    # Kling never combines them, but if it happens the static region is pinned in screen space.
    req = brush_request(camera=CameraPreset.RIGHT_TURN_FORWARD, seconds=1)
    clip = create({"size_scale": 0.5}).generate(req, NullProgress())
    frames = list(clip.frames)
    ys = (to_out(STATIC) > 0)
    first = frames[0][:360]
    assert all(np.array_equal(f[:360][ys], first[ys]) for f in frames)  # luma, bit-exact
    assert cv2.absdiff(frames[-1][:360], first)[~ys].mean() > 5  # while the rest moved


def test_hole_is_filled_with_texture_not_a_smear(brush):
    frames, _ = brush
    last = frames[-1]
    hole = cv2.erode(to_out(OBJ), np.ones((7, 7), np.uint8)) > 0
    near, inner = (cv2.dilate(to_out(OBJ), np.ones((k, k), np.uint8)) > 0 for k in (31, 9))
    ring = near & ~inner

    def detail(img):
        lap = np.abs(cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32), cv2.CV_32F))
        return lap[hole].mean() / lap[ring].mean()

    def colour_gap(img):
        return float(np.abs(img[hole].mean(axis=0) - img[ring].mean(axis=0)).max())

    assert 0.4 <= detail(last) <= 2.5 and colour_gap(last) < 25
    # The object itself is gone from its old place.
    assert cv2.absdiff(last, frames[0])[hole].mean() > 10
    # Negative control: a flat fill of the ring's mean colour has no texture.
    flat = last.copy()
    flat[hole] = last[ring].mean(axis=0)
    assert detail(flat) < 0.4


def test_brush_clip_has_no_jumps(brush):
    frames, _ = brush
    assert jump_ratio(frames) <= 3
    assert jump_ratio(frames[:20] + frames[40:]) > 3  # control


def test_camera_stays_still_with_masks(brush):
    frames, _ = brush
    far = np.zeros((360, 640), bool)
    far[:, 560:] = True  # right edge: no mask, no trajectory passes there
    assert max(cv2.absdiff(f, frames[0])[far].mean() for f in frames) < 1.0


# ------------------------------------------------------------------------------ refusals


def refused(req: GenerationRequest) -> EngineError:
    with pytest.raises(EngineError) as err:
        create({}).generate(req, NullProgress())
    assert err.value.status == 422
    return err.value


def test_mask_of_the_wrong_size_is_refused():
    small = np.zeros((100, 100), np.uint8)
    small[10:20, 10:20] = 255
    err = refused(GenerationRequest(IMG, (Shot("x", 3),), 3, dynamic_masks=(BrushPath(small, TRAJ),)))
    assert err.loc == ("dynamic_masks", 0, "mask") and "100x100" in err.message
    err = refused(GenerationRequest(IMG, (Shot("x", 3),), 3, static_mask=small))
    assert err.loc == ("static_mask",)


def test_empty_mask_is_refused():
    masks = (BrushPath(OBJ, TRAJ), BrushPath(np.zeros_like(OBJ), TRAJ))
    err = refused(GenerationRequest(IMG, (Shot("x", 3),), 3, dynamic_masks=masks))
    assert err.loc == ("dynamic_masks", 1, "mask") and "selects nothing" in err.message


def test_mask_cut_away_by_the_aspect_crop_is_refused():
    left = np.zeros((H, W), np.uint8)
    left[200:300, 10:60] = 255  # a 9:16 crop of a 16:9 image keeps only the middle
    err = refused(GenerationRequest(IMG, (Shot("x", 3),), 3, aspect=Aspect.PORTRAIT,
                                    dynamic_masks=(BrushPath(left, TRAJ),)))
    assert err.loc == ("dynamic_masks", 0, "mask") and "crop" in err.message


def _v1_brush_input(points: list[tuple[float, float]]) -> dict:
    """v1 standard's fal input with one dynamic mask: Kling's points, origin bottom-left."""
    import io

    from apihelp import data_uri
    from PIL import Image

    png = io.BytesIO()
    Image.fromarray(IMG).save(png, "PNG")
    return {"prompt": "a ball rolls", "image_url": data_uri(png.getvalue()),
            "dynamic_masks": [{"mask_url": "https://example.com/mask.png",
                               "trajectories": [{"x": x, "y": y} for x, y in points]}]}


def test_trajectory_outside_the_image_is_refused():
    # The one check of trajectory points (endpoints.rules) runs once the start image's size is
    # known: when the request is resolved, before the mask is downloaded.
    from apihelp import V1

    from stillreel.config import Limits
    from stillreel.endpoints.registry import ENDPOINTS
    from stillreel.media.fetch import Fetcher
    from stillreel.media.resolve import resolve

    endpoint = ENDPOINTS[V1]
    plan = endpoint.plan(_v1_brush_input([(250.0, 326.0), (400.0, 276.0), (1500.0, 276.0)]))
    with Fetcher(None, Limits(allow_private_urls=True)) as fetcher, pytest.raises(EngineError) as err:
        resolve(plan, fetcher)
    assert err.value.loc == ("dynamic_masks", 0, "trajectory", 2) and "1024×576" in err.value.message
    assert endpoint.fal_loc(err.value.loc) == ["body", "dynamic_masks", 0, "trajectories", 2]


def test_trajectory_needs_two_points():
    from apihelp import V1

    from stillreel.endpoints.registry import ENDPOINTS, InputError

    with pytest.raises(InputError) as err:  # at submit
        ENDPOINTS[V1].plan(_v1_brush_input([(250.0, 326.0)]))
    item = err.value.detail[0]
    assert item["loc"] == ["body", "dynamic_masks", 0, "trajectories"] and item["type"] == "trajectory_length"


def test_masks_with_an_end_image_are_refused():
    err = refused(brush_request(end_image=IMG))
    assert err.loc == ("dynamic_masks",) and "end image" in err.message
