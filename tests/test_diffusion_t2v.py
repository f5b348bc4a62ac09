"""Text to video on tiny random pipelines: no start image, real ``from_pretrained``, real denoising.

Wan2.1 T2V and Wan2.2 T2V-A14B (``WanPipeline``) only generate from text; Wan2.2 TI2V-5B and the
LTX condition pipelines do both. Checked: what reached the pipeline (no image, the right
guidance), the clip's size, rate and frame count, and that the engine refuses a start image to a
text-only model (and its absence to an image-only one) even if a request got past submit.
"""

from __future__ import annotations

import numpy as np
import pytest
import tiny_pipelines as tiny
# Shared fixtures: the tiny models, cached engines, the pipeline-call spy, one torch thread.
from test_diffusion_engine import (LANDSCAPE, calls, engine, frames_of, one_thread, request,  # noqa: F401
                                   tiny_models)

from stillreel.engines.base import Aspect, EngineError, NullProgress, Shot
from stillreel.engines.diffusion import sizing, wan_t2v


def text_request(seconds: int = 1, **fields):
    return request(seconds, start_image=None, **fields)


@pytest.mark.parametrize(
    "name, seconds, aspect, size, fps, frames",
    [
        (tiny.WAN21_T2V, 5, None, (64, 32), 16, 81),  # no image, no aspect: the landscape bucket
        (tiny.WAN22_T2V_A14B, 2, Aspect.PORTRAIT, (32, 64), 16, 33),
        (tiny.WAN22_TI2V, 2, Aspect.SQUARE, (32, 32), 24, 49),  # on its multiple of 32
        (tiny.LTX, 3, None, (64, 32), 24, 73),
        (tiny.LTX2, 2, Aspect.PORTRAIT, (32, 64), 24, 49),
    ],
)
def test_text_to_video_per_family(engine, calls, name, seconds, aspect, size, fps, frames):
    eng = engine(name)
    assert eng.capabilities.text_to_video
    # TI2V-5B is loaded for images; from text it runs the WanPipeline that shares its modules.
    seen = calls(eng, wan_t2v.text_pipeline(eng.pipe) if name == tiny.WAN22_TI2V else None)
    clip = eng.generate(text_request(seconds, aspect=aspect), NullProgress())
    assert (clip.width, clip.height, clip.fps, clip.frame_count) == (*size, fps, frames)
    assert clip.info["mode"] == "text-to-video" and clip.info["family"] == name
    video = frames_of(clip)
    assert video.std() > 0  # decoded from denoised latents, not a blank placeholder
    assert len(seen) == 1 and seen[0]["num_frames"] == frames
    assert (seen[0]["width"], seen[0]["height"]) == size
    # Nothing image-shaped reached the pipeline.
    assert "image" not in seen[0] and "last_image" not in seen[0]
    assert seen[0].get("conditions") is None


def test_ti2v_shares_its_modules_between_image_and_text(engine, calls):
    eng = engine(tiny.WAN22_TI2V, fps=8)
    view = wan_t2v.text_pipeline(eng.pipe)
    assert view is wan_t2v.text_pipeline(eng.pipe)  # made once
    assert view.transformer is eng.pipe.transformer and view.vae is eng.pipe.vae  # no second copy
    with_image, from_text = calls(eng), calls(eng, view)
    eng.generate(request(1), NullProgress())
    eng.generate(text_request(1), NullProgress())
    assert len(with_image) == 1 and np.array_equal(
        np.asarray(with_image[0]["image"]), np.asarray(sizing.fit(LANDSCAPE, (64, 32))))
    assert len(from_text) == 1 and "image" not in from_text[0]


def test_text_only_model_makes_each_shot_from_text_in_one_call(engine, calls):
    # max_seconds 2 would chain segments on an image model; a text-only one cannot continue from a
    # frame, so each shot is one call and the next shot starts afresh (a hard cut).
    eng = engine(tiny.WAN21_T2V, fps=8, max_seconds=2)
    seen = calls(eng)
    clip = eng.generate(text_request(shots=(Shot("a cat", 7), Shot("a dog", 3))), NullProgress())
    assert [c["num_frames"] for c in seen] == [57, 25]
    assert [c["prompt"] for c in seen] == ["a cat", "a dog"]
    assert clip.info["calls"] == 2 and "image" not in seen[1]
    assert clip.frame_count == 81 == sizing.frame_count(10, 8, 4)  # the same count as on any model


@pytest.mark.parametrize("cfg, high, low", [(0.0, 1.0, 1.0), (0.5, 4.0, 3.0), (1.0, 7.0, 5.0)])
def test_wan22_t2v_guides_each_expert_from_its_own_value(engine, calls, cfg, high, low):
    eng = engine(tiny.WAN22_T2V_A14B, fps=8)
    seen = calls(eng)
    eng.generate(text_request(1, guidance=cfg, negative_prompt="blurry"), NullProgress())
    assert (seen[0]["guidance_scale"], seen[0]["guidance_scale_2"]) == (high, low)
    assert seen[0]["negative_prompt"] == ("blurry" if cfg > 0 else None)


def test_ltx2_text_to_video_keeps_its_soundtrack_when_asked(engine):
    clip = engine(tiny.LTX2, fps=8).generate(text_request(2, audio=True), NullProgress())
    assert clip.frame_count == 17
    assert clip.audio is not None and clip.audio.samples.shape == (2, round(17 / 8 * 16000))


@pytest.mark.parametrize("name, start_image, what", [
    (tiny.WAN21_T2V, LANDSCAPE, "a start image"),
    (tiny.WAN22_T2V_A14B, LANDSCAPE, "a start image"),
    (tiny.WAN21_I2V, None, "text-to-video"),
    (tiny.WAN21_FLF2V, None, "text-to-video"),
])
def test_engine_refuses_what_the_model_cannot_take(engine, calls, name, start_image, what):
    eng = engine(name)
    seen = calls(eng)
    with pytest.raises(EngineError) as err:
        eng.generate(request(1, start_image=start_image), NullProgress())
    assert err.value.error_type == "feature_not_supported" and err.value.loc == ("start_image",)
    assert what in err.value.message and name in err.value.message
    assert seen == []


def test_ti2v_from_text_with_a_step_cache(engine):
    # Pyramid attention broadcast reads the loaded pipeline's current timestep at every forward;
    # the text view keeps it current, so the cache skips by the right steps both ways.
    eng = engine(tiny.WAN22_TI2V, fps=8, steps=4, cache="pab")
    assert eng.generate(text_request(1), NullProgress()).frame_count == 9
    assert eng.pipe.current_timestep is None  # reset at the end of the call, as the pipeline does
    assert eng.generate(request(1), NullProgress()).frame_count == 9
