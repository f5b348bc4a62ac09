"""Wan VACE on a tiny random ``WanVACEPipeline``: text, start/end frames and reference images.

VACE takes what it must keep as a control video plus a mask (black = given, white = generate) and
subject references as ``reference_images``. Checked: what reached the pipeline, the clip's size and
frame count, and that each conditioning input changes the video.
"""

from __future__ import annotations

import numpy as np
import pytest
import tiny_pipelines as tiny
import torch
# Shared fixtures: the tiny models, cached engines, the pipeline-call spy, one torch thread.
from test_diffusion_engine import (END, LANDSCAPE, calls, engine, frames_of, one_thread, request,  # noqa: F401
                                   tiny_models)

from stillreel.engines.base import Aspect, Element, NullProgress, Shot
from stillreel.engines.diffusion import sizing

SUBJECT = np.random.default_rng(7).integers(0, 256, (40, 40, 3), dtype=np.uint8)
VIEW = np.random.default_rng(8).integers(0, 256, (30, 50, 3), dtype=np.uint8)
STYLE = np.random.default_rng(9).integers(0, 256, (64, 48, 3), dtype=np.uint8)


def test_capabilities(engine):
    caps = engine(tiny.WAN_VACE).capabilities
    assert caps.text_to_video and caps.image_to_video and caps.end_frame
    assert caps.reference_images and caps.elements and not caps.voices and not caps.audio


def test_text_to_video_has_no_control_video(engine, calls):
    eng = engine(tiny.WAN_VACE)
    seen = calls(eng)
    clip = eng.generate(request(2, start_image=None, aspect=Aspect.PORTRAIT), NullProgress())
    assert (clip.width, clip.height, clip.fps, clip.frame_count) == (32, 64, 16, 33)
    assert clip.info["mode"] == "text-to-video" and clip.info["references"] == 0
    assert seen[0]["video"] is None and seen[0]["mask"] is None and seen[0]["reference_images"] is None
    assert frames_of(clip).std() > 0


@pytest.fixture
def control_inputs(engine):
    """The control latents (video, mask) the VACE transformer received at each forward pass."""
    seen, hooks = [], []

    def spy(eng) -> list:
        def record(module, args, kwargs):
            seen.append(kwargs["control_hidden_states"].detach().clone())
        hooks.append(eng.pipe.transformer.register_forward_pre_hook(record, with_kwargs=True))
        return seen

    yield spy
    for hook in hooks:
        hook.remove()


def test_start_and_end_frames_are_the_masked_control_video(engine, calls, control_inputs):
    eng = engine(tiny.WAN_VACE, fps=8)
    seen = calls(eng)
    control = control_inputs(eng)
    with_end = frames_of(eng.generate(request(2, end_image=END), NullProgress()))
    passes = len(control)
    frames_of(eng.generate(request(2), NullProgress()))
    assert with_end.shape == (17, 32, 64, 3)
    video, mask = seen[0]["video"], [np.asarray(m) for m in seen[0]["mask"]]
    assert len(video) == len(mask) == 17
    assert np.array_equal(np.asarray(video[0]), np.asarray(sizing.fit(LANDSCAPE, (64, 32))))
    assert np.array_equal(np.asarray(video[-1]), np.asarray(sizing.fit(END, (64, 32))))
    assert mask[0].max() == 0 and mask[-1].max() == 0  # kept
    assert all(m.min() == 255 for m in mask[1:-1])  # generated, over mid-grey
    assert all(np.asarray(v).min() == np.asarray(v).max() == 127 for v in video[1:-1])
    # Without an end frame only frame 0 is pinned.
    assert np.asarray(seen[1]["mask"][-1]).min() == 255
    # The denoiser's control input differs with the end frame. (What that does to the pixels is
    # below uint8 resolution with these tiny random weights; a trained model is what makes it matter.)
    assert not torch.equal(control[0], control[passes])


def test_reference_images_and_elements_reach_the_pipeline(engine, calls):
    eng = engine(tiny.WAN_VACE, fps=8)
    seen = calls(eng)
    element = Element(frontal=SUBJECT, references=(VIEW,))
    with_refs = eng.generate(request(1, start_image=None, reference_images=(STYLE,), elements=(element,)),
                             NullProgress())
    plain = eng.generate(request(1, start_image=None), NullProgress())
    refs = seen[0]["reference_images"]
    # As given, in order: the reference images, then each element's frontal and extra views.
    assert [np.asarray(r).shape for r in refs] == [STYLE.shape, SUBJECT.shape, VIEW.shape]
    assert np.array_equal(np.asarray(refs[1]), SUBJECT)
    assert with_refs.info["references"] == 3 and with_refs.frame_count == plain.frame_count == 9
    assert not np.array_equal(frames_of(with_refs), frames_of(plain))  # the references condition the video


def test_segments_keep_the_references_and_continue_from_the_last_frame(engine, calls):
    eng = engine(tiny.WAN_VACE, fps=8, max_seconds=1)
    seen = calls(eng)
    clip = eng.generate(request(shots=(Shot("a", 2),), reference_images=(STYLE,)), NullProgress())
    frames = frames_of(clip)
    assert clip.info["calls"] == 2 and clip.frame_count == 17
    assert [len(c["reference_images"]) for c in seen] == [1, 1]
    assert np.array_equal(np.asarray(seen[1]["video"][0]), frames[8])
