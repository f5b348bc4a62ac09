"""Multi-shot: hard cuts exactly at the shot boundaries, one camera per shot (from its prompt),
durations that must add up, and an end image that the last shot lands on."""

from __future__ import annotations

import cv2
import pytest
from videocheck import cuts, decode, fractal_image, luma_psnr, mean_motion, psnr, render, ssim

from stillreel.engines.base import GenerationRequest, Shot
from stillreel.engines.motion import create
from stillreel.engines.motion.shots import framing_from_prompt

IMG = fractal_image(1024, 576, 11)
SMALL = cv2.resize(IMG, (640, 360), interpolation=cv2.INTER_AREA)
SHOTS = (Shot("a harbour at dawn, the camera zooms in", 2), Shot("close-up of the boats, pan left", 1),
         Shot("wide shot, the camera pulls back", 1))


@pytest.fixture(scope="module")
def multishot(tmp_path_factory):
    req = GenerationRequest(IMG, SHOTS, 4)
    path, clip = render(create({"size_scale": 0.5}), req, tmp_path_factory.mktemp("shots") / "s.mp4")
    return decode(path), clip


def test_cuts_exactly_at_shot_boundaries(multishot):
    frames, clip = multishot
    assert len(frames) == 96
    assert cuts(frames) == [47, 71]  # frame 47 → 48 and 71 → 72
    assert [s["frames"] for s in clip.info["shots"]] == [48, 24, 24]


def test_a_single_shot_has_no_cuts(tmp_path):
    # Negative control for the cut detector: one continuous 4 s camera move.
    path, _ = render(create({"size_scale": 0.5}), GenerationRequest(IMG, (Shot("zoom in", 4),), 4),
                     tmp_path / "one.mp4")
    assert cuts(decode(path)) == []


def test_each_shot_has_its_own_camera(multishot):
    frames, _ = multishot
    first, third = mean_motion(frames[:48]), mean_motion(frames[72:])
    assert first["zoom_rate"] > 1e-3  # "zooms in"
    assert third["zoom_rate"] < -1e-3  # "pulls back"
    second = mean_motion(frames[48:72])
    assert second["tx"] > 0.3  # "pan left": the content moves right


def test_first_frame_is_the_input_and_later_shots_are_framed(multishot):
    frames, _ = multishot
    assert psnr(frames[0], SMALL) >= 30
    assert psnr(frames[48], SMALL) < 20  # shot 2 is a close-up, not the wide input


def test_shot_durations_must_add_up():
    # fal's rule, checked once at submit (endpoints.rules) for every engine.
    from stillreel.endpoints.registry import ENDPOINTS, InputError

    with pytest.raises(InputError) as err:
        ENDPOINTS["fal-ai/kling-video/v3/pro/image-to-video"].plan(
            {"start_image_url": "https://example.com/a.png", "duration": "5",
             "multi_prompt": [{"prompt": "a", "duration": "2"}, {"prompt": "b", "duration": "2"}]})
    item = err.value.detail[0]
    assert item["loc"] == ["body", "multi_prompt"] and "add up to 4 s" in item["msg"]


def test_last_shot_lands_on_the_end_image(tmp_path):
    end = fractal_image(1024, 576, 12)
    req = GenerationRequest(IMG, (Shot("zoom in", 1), Shot("then it changes", 1)), 2, end_image=end)
    path, clip = render(create({"size_scale": 0.5}), req, tmp_path / "e.mp4")
    frames = decode(path)
    small_end = cv2.resize(end, (640, 360), interpolation=cv2.INTER_AREA)
    assert luma_psnr(frames[-1], small_end) >= 30 and ssim(frames[-1], small_end) >= 0.95
    assert psnr(frames[24], SMALL) >= 30  # the morph shot starts on the (wide) input
    assert psnr(frames[23], SMALL) < 30  # after shot 1 ended zoomed in: a cut


@pytest.mark.parametrize("prompt, framing", [
    ("Close-up of her face", "close"), ("extreme close up on the eyes", "close"),
    ("medium shot, two people talk", "medium"), ("wide shot of the valley", "wide"),
    ("establishing shot", "wide"), ("a dog runs", None),
])
def test_framing_words(prompt, framing):
    assert framing_from_prompt(prompt) == framing



def test_intelligent_shot_type_splits_the_prompt_into_hard_cut_shots(tmp_path):
    from videocheck import RecordingProgress, cuts, decode, render

    from stillreel.engines.base import ShotType
    from stillreel.engines.motion.shots import split_prompt

    assert split_prompt("A wide shot of a bay. Then a close-up of a boat, then zoom out", 5) == [
        ("A wide shot of a bay", 2), ("a close-up of a boat", 2), ("zoom out", 1)]
    assert split_prompt("a cat", 4) == [("a cat", 4)]
    progress = RecordingProgress()
    req = GenerationRequest(IMG, (Shot("A wide shot. A close-up of the boat.", 2),), 2, shot_type=ShotType.INTELLIGENT)
    path, _ = render(create({"size_scale": 0.25}), req, tmp_path / "i.mp4", progress)
    assert any("shot 2 (1 s): 'A close-up of the boat'" in line for line in progress.logs)
    assert cuts(decode(path)) == [23]  # frame 23 → 24
    # Control: the same prompt as one customize shot has no cut.
    path, _ = render(create({"size_scale": 0.25}), GenerationRequest(IMG, req.shots, 2), tmp_path / "c.mp4")
    assert cuts(decode(path)) == []
