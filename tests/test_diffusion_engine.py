"""The diffusion engine on tiny random pipelines: real ``from_pretrained``, real denoising, on the CPU.

The pipelines (tests/tiny_pipelines.py) have the published checkpoints' layouts and compression
factors, with a few thousand random weights, so every path of the engine runs as it would on a
GPU — only the pictures are noise. What is checked are values and shapes: frame counts, sizes,
what reached the pipeline, what came out, and how failures surface.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import tiny_pipelines as tiny
import torch
from PIL import Image
from videocheck import probe

from stillreel.config import Limits
from stillreel.engines.base import Aspect, Cancelled, EngineError, GenerationRequest, NullProgress, Shot
from stillreel.engines.diffusion import OptionsError, create
from stillreel.engines.diffusion import sizing
from stillreel.media.encode import encode

LANDSCAPE = np.random.default_rng(1).integers(0, 256, (48, 80, 3), dtype=np.uint8)
PORTRAIT = np.ascontiguousarray(LANDSCAPE.transpose(1, 0, 2))
END = np.random.default_rng(2).integers(0, 256, (48, 80, 3), dtype=np.uint8)
OTHER_END = np.random.default_rng(3).integers(0, 256, (48, 80, 3), dtype=np.uint8)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict:
    return tiny.build_all(tmp_path_factory.getbasetemp() / "tiny-pipelines")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Models this small spend their time in thread hand-offs: one thread is faster on a busy machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def engine(tiny_models):
    """``engine(family, **options)``: a loaded engine, cached per family and options."""
    cache = {}

    def get(name: str, **options):
        key = (name, tuple(sorted(options.items())))
        if key not in cache:
            cache[key] = create({"model": str(tiny_models[name]), "steps": 2, "resolution": "64x32", **options})
        return cache[key]

    return get


def request(seconds: int = 1, **fields) -> GenerationRequest:
    fields.setdefault("start_image", LANDSCAPE)
    fields.setdefault("shots", (Shot("a cat walks", seconds),))
    return GenerationRequest(seconds=sum(s.seconds for s in fields["shots"]), **fields)


class Recorder:
    """Progress that keeps every report; optionally cancels (or fails) at the n-th step report."""

    def __init__(self, cancel_at: int | None = None):
        self.reports: list[tuple[float, str | None]] = []
        self.logs: list[str] = []
        self.cancel_at = cancel_at
        self.cancelled = False

    def report(self, fraction: float, message: str | None = None) -> None:
        self.reports.append((fraction, message))
        if self.cancel_at is not None and len(self.reports) >= self.cancel_at:
            self.cancelled = True
            raise Cancelled()

    def log(self, message: str, level: str = "INFO") -> None:
        self.logs.append(message)


@pytest.fixture
def calls(monkeypatch):
    """``calls(engine[, pipe])``: a list that receives the keyword arguments of each call of the
    engine's pipeline (or of ``pipe``), the real call still made (a spy on the pipeline class,
    undone after the test)."""

    def spy(eng, pipe=None) -> list[dict]:
        seen: list[dict] = []
        cls = type(pipe if pipe is not None else eng.pipe)
        original = cls.__call__

        def recording(self, *args, **kwargs):
            seen.append(kwargs)
            return original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__call__", recording)
        return seen

    return spy


@pytest.fixture
def forwards():
    """``forwards(module)``: a list that grows by one per forward pass of ``module``."""
    hooks = []

    def count(module) -> list:
        seen = []
        hooks.append(module.register_forward_hook(lambda *_: seen.append(1)))
        return seen

    yield count
    for hook in hooks:
        hook.remove()


def frames_of(clip) -> np.ndarray:
    frames = np.stack(list(clip.frames))
    assert frames.dtype == np.uint8 and frames.shape == (clip.frame_count, clip.height, clip.width, 3)
    return frames


# -- durations, aspect ratios, families ------------------------------------------------------------


@pytest.mark.parametrize(
    "seconds, aspect, image, size, frames, pipeline_calls",
    [
        (5, None, LANDSCAPE, (64, 32), 81, 1),  # 5 s at Wan's 16 fps: 4k+1 = 81
        (5, None, PORTRAIT, (32, 64), 81, 1),  # no aspect: follow the input's orientation
        (3, Aspect.SQUARE, LANDSCAPE, (48, 48), 49, 1),  # square keeps the bucket's area
        (10, Aspect.PORTRAIT, LANDSCAPE, (32, 64), 161, 2),  # over Wan's 5 s: two chained segments
    ],
)
def test_wan_frames_and_size_per_duration_and_aspect(engine, seconds, aspect, image, size, frames, pipeline_calls):
    eng = engine(tiny.WAN21_I2V)
    clip = eng.generate(request(seconds, aspect=aspect, start_image=image), NullProgress())
    assert (clip.width, clip.height, clip.fps, clip.frame_count) == (*size, 16, frames)
    assert clip.audio is None and clip.pix_fmt == "rgb24"
    assert clip.info["calls"] == pipeline_calls
    assert frames_of(clip).shape[0] == frames


@pytest.mark.parametrize(
    "name, seconds, fps, size, frames",
    [
        (tiny.WAN22_TI2V, 2, 24, (64, 32), 49),  # TI2V-5B: 24 fps, sizes on multiples of 32
        (tiny.WAN22_A14B, 2, 16, (64, 32), 33),
        (tiny.LTX, 3, 24, (64, 32), 73),  # LTX: 8k+1 frames at 24 fps
        (tiny.LTX2, 2, 24, (64, 32), 49),
    ],
)
def test_each_family_on_its_native_rate_and_quantum(engine, name, seconds, fps, size, frames):
    clip = engine(name).generate(request(seconds), NullProgress())
    assert (clip.width, clip.height, clip.fps, clip.frame_count) == (*size, fps, frames)
    assert clip.info["family"] == name and clip.info["engine"] == "diffusion"
    frames_of(clip)


def test_ti2v_square_bucket_is_on_its_multiple(engine):
    clip = engine(tiny.WAN22_TI2V, fps=8).generate(request(1, aspect=Aspect.SQUARE), NullProgress())
    assert (clip.width, clip.height) == (32, 32)  # √(64·32) ≈ 45 → nearest multiple of 32


def test_clip_info_and_progress(engine):
    progress = Recorder()
    clip = engine(tiny.WAN21_I2V).generate(request(10, shots=(Shot("a", 5), Shot("b", 5))), progress)
    assert clip.info | {"generate_seconds": 0} == clip.info | {
        "engine": "diffusion", "model": clip.info["model"], "family": "wan2.1-i2v", "mode": "image-to-video",
        "steps": 2, "guidance_scale": 5.0, "calls": 2, "device": "cpu", "dtype": "float32", "attention": "native",
        "compile": False, "vae_tiling": False, "generate_seconds": 0,
    }
    assert clip.info["model"].endswith("wan2.1-i2v")
    # Two calls of two steps: "step k/4", fractions rising to 1.
    assert [m for _, m in progress.reports] == ["step 1/4", "step 2/4", "step 3/4", "step 4/4"]
    assert [f for f, _ in progress.reports] == [0.25, 0.5, 0.75, 1.0]
    assert any("161 frames at 64x32" in line for line in progress.logs)


def test_same_seed_same_video_other_seed_other_video(engine):
    eng = engine(tiny.WAN21_I2V, fps=8)
    a = frames_of(eng.generate(request(1, seed=7), NullProgress()))
    b = frames_of(eng.generate(request(1, seed=7), NullProgress()))
    c = frames_of(eng.generate(request(1, seed=8), NullProgress()))
    assert np.array_equal(a, b)
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 1.0


# -- multi-shot and end frames ---------------------------------------------------------------------


def test_multi_shot_each_shot_starts_from_the_previous_last_frame(engine, calls):
    eng = engine(tiny.WAN21_I2V)
    seen = calls(eng)
    clip = eng.generate(request(shots=(Shot("a cat", 2), Shot("a dog", 3))), NullProgress())
    frames = frames_of(clip)
    assert clip.frame_count == 81 == sizing.frame_count(5, 16, 4)  # 33 + 49 - the repeated frame
    assert [c["prompt"] for c in seen] == ["a cat", "a dog"]
    assert [c["num_frames"] for c in seen] == [33, 49]
    # The second shot was conditioned on the first shot's last frame (a hard cut, no blending).
    assert np.array_equal(np.asarray(seen[1]["image"]), frames[32])
    assert np.array_equal(np.asarray(seen[0]["image"]), np.asarray(sizing.fit(LANDSCAPE, (64, 32))))


@pytest.mark.parametrize("name", [tiny.WAN21_FLF2V, tiny.LTX, tiny.LTX2])
def test_end_frame_reaches_the_pipeline(engine, calls, name):
    eng = engine(name, fps=8)
    assert eng.capabilities.end_frame
    seen = calls(eng)
    with_end = frames_of(eng.generate(request(2, end_image=END), NullProgress()))
    with_other = frames_of(eng.generate(request(2, end_image=OTHER_END), NullProgress()))
    without = frames_of(eng.generate(request(2), NullProgress()))
    end = np.asarray(sizing.fit(END, (64, 32)))
    frames = seen[0]["num_frames"]
    if name == tiny.WAN21_FLF2V:
        assert np.array_equal(np.asarray(seen[0]["last_image"]), end)
        assert "last_image" not in seen[2]
    elif name == tiny.LTX:
        cond = seen[0]["conditions"]
        assert [c.frame_index for c in cond] == [0, frames - 1]
        assert np.array_equal(np.asarray(cond[1].image), end)
        assert len(seen[2]["conditions"]) == 1
    else:
        cond = seen[0]["conditions"]
        assert [c.index for c in cond] == [0, -1]
        assert np.array_equal(np.asarray(cond[1].frames), end)
        assert len(seen[2]["conditions"]) == 1
    # Same seed and start (and generation is deterministic): only the end image differs, and so
    # does the video. The random weights make the effect small, but it is there.
    assert not np.array_equal(with_end, with_other)
    assert not np.array_equal(with_end, without)


def test_end_frame_goes_to_the_last_segment_only(engine, calls):
    eng = engine(tiny.LTX, fps=8, max_seconds=2)
    seen = calls(eng)
    clip = eng.generate(request(4, end_image=END), NullProgress())
    assert clip.info["calls"] == 2 and clip.frame_count == 33
    assert [len(c["conditions"]) for c in seen] == [1, 2]


# -- guidance --------------------------------------------------------------------------------------


@pytest.mark.parametrize("cfg, scale, passes_per_step", [(0.0, 1.0, 1), (0.5, 3.5, 2), (1.0, 6.0, 2)])
def test_guidance_mapping_wan_two_experts(engine, calls, forwards, cfg, scale, passes_per_step):
    eng = engine(tiny.WAN22_A14B, fps=8)
    seen = calls(eng)
    passes = forwards(eng.pipe.transformer), forwards(eng.pipe.transformer_2)
    clip = eng.generate(request(1, guidance=cfg, negative_prompt="blurry"), NullProgress())
    assert seen[0]["guidance_scale"] == scale and seen[0]["guidance_scale_2"] == scale
    assert seen[0]["negative_prompt"] == ("blurry" if scale > 1 else None)
    # Guidance off really skips the unconditional pass: one transformer call per step, not two.
    assert len(passes[0]) + len(passes[1]) == passes_per_step * 2
    assert clip.info["guidance_scale"] == scale


def test_guidance_mapping_ltx2_moves_every_knob(engine, calls):
    eng = engine(tiny.LTX2, fps=8)
    seen = calls(eng)
    for cfg in (0.0, 0.5, 1.0):
        eng.generate(request(1, guidance=cfg), NullProgress())
    off, default, strong = seen
    assert (off["guidance_scale"], off["audio_guidance_scale"], off["modality_scale"], off["stg_scale"]) == (1, 1, 1, 0)
    assert off["negative_prompt"] is None
    assert (default["guidance_scale"], default["audio_guidance_scale"], default["modality_scale"]) == (3.0, 7.0, 3.0)
    assert (strong["guidance_scale"], strong["audio_guidance_scale"], strong["modality_scale"]) == (5.0, 13.0, 5.0)
    # The tiny transformer has 2 blocks: STG's block 28 does not exist, so STG stays off.
    assert default["stg_scale"] == 0.0 and default["spatio_temporal_guidance_blocks"] is None


def test_default_negative_prompt_and_a_given_one(engine, calls):
    eng = engine(tiny.LTX, fps=8)
    seen = calls(eng)
    eng.generate(request(1), NullProgress())
    eng.generate(request(1, negative_prompt="low quality"), NullProgress())
    assert seen[0]["negative_prompt"] == eng.family.negative_prompt != ""
    assert seen[1]["negative_prompt"] == "low quality"


# -- audio -----------------------------------------------------------------------------------------


def test_ltx2_audio_track_is_encoded_as_aac(engine, tmp_path):
    clip = engine(tiny.LTX2).generate(request(2, audio=True), NullProgress())
    assert clip.frame_count == 49 and clip.fps == 24
    assert clip.audio is not None and clip.audio.sample_rate == 16000
    samples = clip.audio.samples
    assert samples.dtype == np.float32 and samples.shape == (2, round(49 / 24 * 16000))
    assert np.abs(samples).max() > 0 and np.abs(samples).max() <= 1.0
    encode(clip, tmp_path / "ltx2.mp4")
    info = probe(tmp_path / "ltx2.mp4")
    assert (info["width"], info["height"], info["frames"]) == (64, 32, 49)
    assert info["audio"]["codec"] == "aac" and info["audio"]["rate"] == 16000
    assert info["audio"]["duration"] == pytest.approx(49 / 24, abs=0.05)


def test_ltx2_multi_shot_audio_lines_up_with_the_video(engine):
    clip = engine(tiny.LTX2, fps=8).generate(request(shots=(Shot("a", 1), Shot("b", 2)), audio=True), NullProgress())
    assert clip.info["calls"] == 2 and clip.frame_count == 25
    assert clip.audio.samples.shape[1] == round(25 / 8 * 16000)


def test_ltx2_soundtrack_is_dropped_unless_asked_for(engine):
    assert engine(tiny.LTX2, fps=8).generate(request(1), NullProgress()).audio is None


def test_wan_clip_has_no_audio_track(engine, tmp_path):
    clip = engine(tiny.WAN21_I2V, fps=8).generate(request(1), NullProgress())
    encode(clip, tmp_path / "wan.mp4")
    assert probe(tmp_path / "wan.mp4")["audio"] is None


# -- refusals, cancel, out of memory ----------------------------------------------------------------


MASK = np.zeros((48, 80), np.uint8)


V1S = "fal-ai/kling-video/v1/standard/image-to-video"
O3I = "fal-ai/kling-video/o3/standard/image-to-video"
V26 = "fal-ai/kling-video/v2.6/pro/image-to-video"
V26T = "fal-ai/kling-video/v2.6/pro/text-to-video"


@pytest.mark.parametrize(
    "endpoint_id, extra, field",
    [
        (V1S, {"static_mask_url": "https://x/m.png"}, "static_mask_url"),
        (V1S, {"dynamic_masks": [{"mask_url": "https://x/m.png", "trajectories": [{"x": 1, "y": 1}, {"x": 5, "y": 5}]}]},
         "dynamic_masks"),
        (V1S, {"camera_control": "forward_up"}, "camera_control"),
        (V1S, {"tail_image_url": "https://x/e.png"}, "tail_image_url"),
        (O3I, {"end_image_url": "https://x/e.png"}, "end_image_url"),
        (O3I, {"generate_audio": True}, "generate_audio"),
        (V26, {"generate_audio": True}, "generate_audio"),
    ],
)
def test_unsupported_fields_are_refused_at_submit(engine, calls, endpoint_id, extra, field):
    from stillreel.endpoints.registry import ENDPOINTS, InputError

    eng = engine(tiny.WAN21_I2V)
    seen = calls(eng)
    endpoint = ENDPOINTS[endpoint_id]
    start = "start_image_url" if endpoint_id == V26 else "image_url"
    plan = endpoint.plan({"prompt": "p", start: "https://x/s.png", **extra})
    with pytest.raises(InputError) as err:  # the one check, from the engine's capabilities
        endpoint.admit(plan, eng.capabilities, "diffusion engine (wan2.1-i2v)")
    item = err.value.detail[0]
    assert item["type"] == "feature_not_supported" and item["loc"] == ["body", field]
    assert field in item["msg"] and "wan2.1-i2v" in item["msg"]
    assert seen == []


def test_a_default_the_model_cannot_honour_runs_without_it(engine, tmp_path):
    from stillreel.endpoints.registry import ENDPOINTS
    from stillreel.jobs.child import render
    from stillreel.media.fetch import Fetcher

    eng = engine(tiny.WAN21_I2V, fps=8)
    endpoint = ENDPOINTS[V26]
    png = io.BytesIO()
    Image.fromarray(np.full((48, 80, 3), 120, np.uint8)).save(png, "PNG")
    uri = "data:image/png;base64," + base64.b64encode(png.getvalue()).decode()
    plan = endpoint.admit(endpoint.plan({"prompt": "p", "start_image_url": uri}), eng.capabilities)
    assert plan.audio is False and plan.dropped == ("audio",)  # generate_audio defaults true on v2.6
    progress = Recorder()
    with Fetcher(None, Limits(allow_private_urls=True)) as fetcher:
        info = render(plan, eng, fetcher, tmp_path / "out.mp4", progress)
    assert info["dropped_defaults"] == ["generate_audio"]  # the caller's field name
    assert any(line.startswith("generate_audio:") and "without it" in line for line in progress.logs)
    assert probe(tmp_path / "out.mp4")["audio"] is None


def test_text_to_video_ids_are_refused_by_image_to_video_models(engine):
    from stillreel.endpoints.registry import ENDPOINTS, InputError

    endpoint = ENDPOINTS[V26T]
    with pytest.raises(InputError) as err:
        endpoint.admit(endpoint.plan({"prompt": "p", "generate_audio": False}), engine(tiny.WAN21_I2V).capabilities)
    assert err.value.detail[0]["type"] == "feature_not_supported"
    assert err.value.detail[0]["ctx"]["feature"] == "text_to_video"


def test_cancel_interrupts_at_the_next_step(engine, forwards):
    eng = engine(tiny.WAN21_I2V, fps=8, steps=4)
    passes = forwards(eng.pipe.transformer)
    decodes = forwards(eng.pipe.vae.decoder)
    progress = Recorder(cancel_at=2)
    with pytest.raises(Cancelled):
        eng.generate(request(1), progress)
    assert [m for _, m in progress.reports] == ["step 1/4", "step 2/4"]
    assert len(passes) == 2 * 2  # two steps of CFG (cond + uncond), then nothing
    assert decodes == []  # stopped before decoding
    # The engine is fine afterwards.
    assert eng.generate(request(1), NullProgress()).frame_count == 9


def test_out_of_memory_fails_the_request_and_keeps_the_engine(engine):
    eng = engine(tiny.WAN21_I2V, fps=8)

    def exhausted(module, args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    hook = eng.pipe.transformer.register_forward_pre_hook(exhausted)
    try:
        with pytest.raises(EngineError) as err:
            eng.generate(request(1), NullProgress())
    finally:
        hook.remove()
    assert err.value.error_type == "out_of_memory" and err.value.status == 503
    assert "out of memory" in err.value.message and "Tried to allocate 20.00 GiB" in err.value.message
    assert err.value.__context__ is None or err.value.__suppress_context__
    assert eng.generate(request(1), NullProgress()).frame_count == 9


def test_other_failures_propagate_unchanged(engine):
    eng = engine(tiny.WAN21_I2V, fps=8)

    def broken(module, args):
        raise ValueError("a bug")

    hook = eng.pipe.transformer.register_forward_pre_hook(broken)
    try:
        with pytest.raises(ValueError, match="a bug"):
            eng.generate(request(1), NullProgress())
    finally:
        hook.remove()


# -- speed options on the CPU ----------------------------------------------------------------------


def test_step_cache_option_is_applied(engine):
    eng = engine(tiny.WAN21_I2V, fps=8, cache="first_block")
    assert eng.pipe.transformer.is_cache_enabled
    assert eng.speed_settings["cache"] == "first_block"
    assert eng.generate(request(1), NullProgress()).frame_count == 9


def test_compile_with_a_step_cache_runs(engine):
    # Regional torch.compile on the CPU (inductor): the same code path a GPU takes, warm-up included.
    # A full graph cannot hold the cache hooks' control flow; this guards that combination.
    eng = engine(tiny.LTX, fps=8, compile=True, cache="first_block")
    assert eng.speed_settings["compile"] is True and eng.pipe.transformer.is_cache_enabled
    first = frames_of(eng.generate(request(1), NullProgress()))
    again = frames_of(eng.generate(request(1), NullProgress()))
    assert first.shape == (9, 32, 64, 3) and np.array_equal(first, again)


def test_bad_speed_options_fail_at_load(tiny_models):
    with pytest.raises(OptionsError, match="offload"):
        create({"model": str(tiny_models[tiny.WAN21_I2V]), "offload": "model", "device": "cpu"})
    with pytest.raises(OptionsError, match="'attention' = 'warp'"):
        create({"model": str(tiny_models[tiny.WAN21_I2V]), "attention": "warp"})
    if not torch.cuda.is_available():
        with pytest.raises(OptionsError, match="CUDA is not available"):
            create({"model": str(tiny_models[tiny.WAN21_I2V]), "device": "cuda"})
