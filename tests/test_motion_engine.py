"""The motion engine as a whole: capabilities, container facts at full size, progress and cancel,
determinism, honesty about what it is, and the refusals that must happen before any frame."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from videocheck import RecordingProgress, fractal_image, probe, render

from stillreel.engines import EngineSpec
from stillreel.engines import capabilities as engine_capabilities
from stillreel.engines import create as create_engine
from stillreel.engines.base import (
    Aspect,
    BrushPath,
    CameraPreset,
    Cancelled,
    EngineError,
    GenerationRequest,
    NullProgress,
    Shot,
    Tier,
)
from stillreel.engines.motion import create
from stillreel.media.encode import encode

IMG = fractal_image(1024, 576, 21)


def request(seconds=3, **kw) -> GenerationRequest:
    return GenerationRequest(IMG, (Shot("a boat drifts, the camera zooms in", seconds),), seconds, **kw)


def render_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "motion-render"]


def test_capabilities_and_loading_by_name():
    caps = engine_capabilities(EngineSpec("motion"))
    assert (caps.end_frame, caps.motion_brush, caps.camera, caps.multi_shot, caps.aspect_ratio) == (True,) * 5
    assert caps.audio is True and caps.negative_prompt is True  # accepted, ignored, documented
    engine = create_engine(EngineSpec("motion", {"size_scale": 0.5}))
    assert engine.name == "motion" and engine.size_scale == 0.5


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="size_scale"):
        create({"size_scale": 2})
    with pytest.raises(ValueError, match="no model"):
        create({"model": "/models/x"})


def test_full_size_container_facts(tmp_path):
    path, clip = render(create({}), request(), tmp_path / "full.mp4")
    info = probe(path)
    assert (info["codec"], info["profile"], info["pix_fmt"]) == ("h264", "High", "yuv420p")
    assert (info["width"], info["height"], info["fps"], info["frames"]) == (1280, 720, 24.0, 72)
    assert info["faststart"] and info["colorspace"] == 1 and info["audio"] is None


def test_info_and_logs_say_plainly_what_made_the_video():
    progress = RecordingProgress()
    clip = create({"size_scale": 0.25}).generate(request(negative_prompt="blur"), progress)
    assert clip.info["engine"] == "motion" and clip.info["generative"] is False
    assert any("not generative" in line for line in progress.logs)
    assert any("negative_prompt is ignored" in line for line in progress.logs)
    assert any("zoom in" in line for line in progress.logs)


def test_generate_returns_before_rendering_and_progress_is_reported_per_frame(tmp_path):
    progress = RecordingProgress()
    clip = create({"size_scale": 0.25}).generate(request(), progress)
    assert not render_threads()  # nothing rendered yet: the frames are lazy
    encode(clip, tmp_path / "p.mp4")
    fractions = [f for f, _ in progress.reports]
    assert len(fractions) == 72 and fractions == sorted(fractions) and fractions[-1] == 1.0
    messages = [m for _, m in progress.reports if m]
    assert 9 <= len(messages) <= 11 and messages[-1] == "rendering frame 72/72"
    assert "rendering frame 36/72" in messages or "rendering frame 35/72" in messages
    assert not render_threads()


def test_cancel_stops_within_a_frame(tmp_path):
    progress = RecordingProgress(cancel_after=10)
    clip = create({"size_scale": 0.25}).generate(request(), progress)
    with pytest.raises(Cancelled):
        encode(clip, tmp_path / "c.mp4")
    assert len(progress.reports) == 10 and progress.cancelled
    assert not render_threads()  # the render thread was stopped, not left running
    assert not (tmp_path / "c.mp4").exists()


def test_same_request_same_bytes(tmp_path):
    engine = create({"size_scale": 0.25})
    a, _ = render(engine, request(camera=CameraPreset.RIGHT_TURN_FORWARD), tmp_path / "a.mp4")
    b, _ = render(engine, request(camera=CameraPreset.RIGHT_TURN_FORWARD), tmp_path / "b.mp4")
    assert a.read_bytes() == b.read_bytes()
    # Control: a different request gives different bytes.
    c, _ = render(engine, request(camera=CameraPreset.RIGHT_TURN_FORWARD, guidance=0.9), tmp_path / "c.mp4")
    assert c.read_bytes() != a.read_bytes()


def test_same_morph_and_brush_requests_same_frames():
    engine = create({"size_scale": 0.25})
    mask = np.zeros((576, 1024), np.uint8)
    mask[100:200, 100:220] = 255
    for req in (request(seconds=1, end_image=np.roll(IMG, 30, axis=1)),
                request(seconds=1, dynamic_masks=(BrushPath(mask, ((150, 150), (600, 300))),))):
        runs = [np.stack(list(engine.generate(req, NullProgress()).frames)) for _ in range(2)]
        assert np.array_equal(*runs)


def test_audio_is_a_procedural_ambience_of_the_clips_length_that_follows_the_motion(tmp_path):
    import av

    progress = RecordingProgress()
    engine = create({"size_scale": 0.25})
    clip = engine.generate(request(audio=True, seed=7), progress)
    assert any("procedural ambience" in line and "not generated" in line for line in progress.logs)
    path = tmp_path / "a.mp4"
    encode(clip, path)
    info = probe(path)
    assert info["audio"]["codec"] == "aac" and abs(info["audio"]["duration"] - info["duration"]) < 0.03
    with av.open(str(path)) as c:
        pcm = np.concatenate([f.to_ndarray() for f in c.decode(audio=0)], axis=1)
    rate = info["audio"]["rate"]
    rms = [float(np.sqrt(np.mean(pcm[:, int(s * rate):int((s + 0.3) * rate)] ** 2))) for s in (0.05, 1.35)]
    assert rms[1] > 1.5 * rms[0]  # louder while the camera moves fastest (mid-clip) than at rest
    # Deterministic from the seed; another seed gives another track.
    same = engine.generate(request(audio=True, seed=7), NullProgress()).audio.samples
    other = engine.generate(request(audio=True, seed=8), NullProgress()).audio.samples
    assert np.array_equal(same, clip.audio.samples) and not np.array_equal(other, same)
    assert engine.generate(request(), NullProgress()).audio is None  # no audio unless asked for


def test_voices_are_noted_in_the_logs():
    progress = RecordingProgress()
    req = GenerationRequest(IMG, (Shot("<<<voice_1>>> says hello, zoom in", 2),), 2, audio=True, voices=("v-abc",))
    create({"size_scale": 0.25}).generate(req, progress)
    assert any("v-abc" in line and "<<<voice_1>>>" in line for line in progress.logs)


@pytest.mark.parametrize("size, aspect, loc", [
    ((4000, 300), Aspect.PORTRAIT, ("aspect",)),  # a 9:16 crop keeps 4% of it
    ((12, 12), None, ("start_image",)),  # too small to be anything
])
def test_uselessly_small_crops_are_refused(size, aspect, loc):
    w, h = size
    req = GenerationRequest(fractal_image(w, h, 3), (Shot("x", 3),), 3, aspect=aspect)
    with pytest.raises(EngineError) as err:
        create({}).generate(req, NullProgress())
    assert err.value.loc == loc and "keep only" in err.value.message


def test_a_wide_panorama_follows_its_orientation_instead():
    req = GenerationRequest(fractal_image(1200, 400, 3), (Shot("x", 3),), 3)  # 3:1, no aspect given
    clip = create({}).generate(req, NullProgress())
    assert (clip.width, clip.height) == (1280, 720)


def test_masks_with_multi_prompt_are_refused():
    mask = np.zeros((576, 1024), np.uint8)
    mask[:50, :50] = 255
    req = GenerationRequest(IMG, (Shot("a", 1), Shot("b", 2)), 3, static_mask=mask)
    with pytest.raises(EngineError) as err:
        create({}).generate(req, NullProgress())
    assert err.value.loc == ("static_mask",) and "multiple shots" in err.value.message


def test_render_errors_reach_the_consumer(tmp_path, monkeypatch):
    # An exception on the render thread surfaces in the encoder's thread, and the thread ends.
    from stillreel.engines.motion import scene

    def broken(self, i):
        raise RuntimeError("boom")

    monkeypatch.setattr(scene.Scene, "render", broken)
    clip = create({"size_scale": 0.25}).generate(request(), NullProgress())
    with pytest.raises(RuntimeError, match="boom"):
        encode(clip, tmp_path / "x.mp4")
    assert not render_threads()


@pytest.mark.parametrize("tier, aspect, size", [
    (Tier.STANDARD, Aspect.LANDSCAPE, (128, 72)), (Tier.PRO, Aspect.PORTRAIT, (72, 128)),
    (Tier.UHD, Aspect.LANDSCAPE, (384, 216)), (Tier.UHD, Aspect.PORTRAIT, (216, 384)), (Tier.UHD, Aspect.SQUARE, (288, 288)),
])
def test_tier_sizes_at_a_tenth(tier, aspect, size):
    clip = create({"size_scale": 0.1}).generate(request(tier=tier, aspect=aspect), NullProgress())
    assert (clip.width, clip.height) == size and clip.info["tier"] == tier.value


def test_real_4k_frames(tmp_path):
    path, _ = render(create({}), request(seconds=1, tier=Tier.UHD), tmp_path / "uhd.mp4")
    info = probe(path)
    assert (info["width"], info["height"], info["frames"]) == (3840, 2160, 24)


def test_camera_moves_render_on_fewer_opencv_threads_and_heavy_renders_keep_them():
    import os

    import cv2

    from stillreel.engines.motion.engine import opencv_threads
    from stillreel.engines.motion.render_plan import build_plan

    mask = np.zeros(IMG.shape[:2], np.uint8)
    mask[10:40, 10:40] = 255
    zoom = build_plan(request(), 0.2).renderer
    morph = build_plan(request(end_image=IMG[::-1].copy()), 0.2).renderer
    brush = build_plan(request(dynamic_masks=(BrushPath(mask, ((20, 20), (60, 30))),)), 0.2).renderer
    assert zoom.light and not morph.light and not brush.light
    before = cv2.getNumThreads()
    cv2.setNumThreads(7)  # an odd count no machine's quarter-of-the-cores can be
    try:
        expected = max(1, min(7, len(os.sched_getaffinity(0)) // 4))
        assert expected != 7
        with opencv_threads(zoom):
            assert cv2.getNumThreads() == expected
            with opencv_threads(zoom):  # overlapping light renders (one process, two clips)
                assert cv2.getNumThreads() == expected
            assert cv2.getNumThreads() == expected  # still lowered: the first render goes on
        assert cv2.getNumThreads() == 7  # restored: the process's other OpenCV work is unchanged
        for heavy in (morph, brush):
            with opencv_threads(heavy):
                assert cv2.getNumThreads() == 7
    finally:
        cv2.setNumThreads(before)
