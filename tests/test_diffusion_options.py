"""Diffusion engine without weights: options, family detection from metadata, sizes, frames, guidance.

Everything here must stay cheap: the API process answers ``capabilities`` from these paths, so
none of it may import torch or diffusers (checked in a fresh interpreter below).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stillreel.config import load_config_file
from stillreel.engines import EngineSpec
from stillreel.engines import capabilities as engine_capabilities
from stillreel.engines.base import Aspect, Shot
from stillreel.engines.diffusion import OptionsError, capabilities, family, parse
from stillreel.engines.diffusion import sizing

REPO = Path(__file__).resolve().parent.parent


def metadata_folder(root: Path, name: str, index: dict, transformer: dict | None = None) -> str:
    """A checkpoint folder with only its JSON metadata: all ``capabilities`` may read."""
    folder = root / name
    (folder / "transformer").mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps(index))
    (folder / "transformer" / "config.json").write_text(json.dumps(transformer or {}))
    return str(folder)


WAN = ["diffusers", "WanTransformer3DModel"]


@pytest.fixture
def folders(tmp_path):
    """The published Diffusers repos' model_index layouts (classes and flags as on the Hub)."""
    return {
        "wan2.1-i2v": metadata_folder(tmp_path, "Wan2.1-I2V-14B-480P-Diffusers", {
            "_class_name": "WanImageToVideoPipeline", "transformer": WAN, "transformer_2": [None, None],
            "image_encoder": ["transformers", "CLIPVisionModel"], "expand_timesteps": False},
            {"in_channels": 36, "image_dim": 1280, "pos_embed_seq_len": None}),
        "wan2.1-flf2v": metadata_folder(tmp_path, "Wan2.1-FLF2V-14B-720P-diffusers", {
            "_class_name": "WanImageToVideoPipeline", "transformer": WAN, "transformer_2": [None, None]},
            {"in_channels": 36, "image_dim": 1280, "pos_embed_seq_len": 514}),
        "wan2.2-i2v-a14b": metadata_folder(tmp_path, "Wan2.2-I2V-A14B-Diffusers", {
            "_class_name": "WanImageToVideoPipeline", "transformer": WAN, "transformer_2": WAN,
            "boundary_ratio": 0.9}, {"in_channels": 36}),
        "wan2.2-ti2v-5b": metadata_folder(tmp_path, "Wan2.2-TI2V-5B-Diffusers", {
            "_class_name": "WanPipeline", "transformer": WAN, "transformer_2": [None, None],
            "expand_timesteps": True}, {"in_channels": 48}),
        "wan2.1-t2v": metadata_folder(tmp_path, "Wan2.1-T2V-14B-Diffusers", {
            "_class_name": "WanPipeline", "transformer": WAN, "transformer_2": [None, None],
            "boundary_ratio": None, "expand_timesteps": False}, {"in_channels": 16, "out_channels": 16}),
        "wan2.2-t2v-a14b": metadata_folder(tmp_path, "Wan2.2-T2V-A14B-Diffusers", {
            "_class_name": "WanPipeline", "transformer": WAN, "transformer_2": WAN, "boundary_ratio": 0.875,
            "expand_timesteps": False}, {"in_channels": 16, "out_channels": 16}),
        "wan-vace": metadata_folder(tmp_path, "Wan2.1-VACE-14B-diffusers", {
            "_class_name": "WanVACEPipeline", "transformer": ["diffusers", "WanVACETransformer3DModel"],
            "transformer_2": [None, None]}, {"in_channels": 16, "vace_layers": [0, 5, 10]}),
        "ltx-video": metadata_folder(tmp_path, "LTX-Video-0.9.5", {"_class_name": "LTXPipeline"}),
        "ltx-2": metadata_folder(tmp_path, "LTX-2", {"_class_name": "LTX2Pipeline"}),
    }


# -- options -------------------------------------------------------------------------------------


def test_options_parse_types_and_defaults():
    opts = parse({"model": " /m ", "dtype": "bf16", "steps": "30", "guidance": 4, "offload": "Model",
                  "compile": "false", "cache": {"type": "first_block", "threshold": 0.1},
                  "vae_tiling": "auto", "fps": 12, "resolution": "960x544", "max_seconds": 4})
    assert opts.model == "/m"
    assert opts.dtype == "bfloat16" and opts.steps == 30 and opts.guidance == 4.0
    assert opts.offload == "model" and opts.compile is False and opts.vae_tiling is None
    assert opts.cache.kind == "first_block" and opts.cache.params == {"threshold": 0.1}
    assert opts.fps == 12 and opts.resolution == (960, 544) and opts.max_seconds == 4
    bare = parse({"model": "x"})
    assert (bare.dtype, bare.offload, bare.attention, bare.compile, bare.cache) == ("auto", "none", "auto", None, None)
    assert parse({"model": "x", "resolution": [832, 480]}).resolution == (832, 480)
    assert parse({"model": "x", "cache": "none"}).cache is None


@pytest.mark.parametrize(
    "options, words",
    [
        ({}, ["'model' is required", "--model"]),
        ({"model": "x", "stpes": 4}, ["unknown option 'stpes'", "did you mean 'steps'"]),
        ({"model": "x", "dtype": "int8"}, ["'dtype'", "bfloat16"]),
        ({"model": "x", "steps": 0}, ["'steps'", "≥ 1"]),
        ({"model": "x", "guidance": 0.5}, ["'guidance'", "between 1"]),
        ({"model": "x", "offload": "disk"}, ["'offload'", "sequential"]),
        ({"model": "x", "cache": "teacache"}, ["'cache'", "first_block"]),
        ({"model": "x", "cache": "mag"}, ["mag_ratios"]),
        ({"model": "x", "resolution": "480x832"}, ["landscape"]),
        ({"model": "x", "resolution": "big"}, ["WIDTHxHEIGHT"]),
        ({"model": "x", "compile": "maybe"}, ["'compile'", "true, false or auto"]),
        ({"model": "x", "family": "svd"}, ["'family'", "wan2.1-i2v"]),
    ],
)
def test_options_errors_name_the_problem(options, words):
    with pytest.raises(OptionsError) as err:
        parse(options)
    for word in words:
        assert word in str(err.value)


# -- families ------------------------------------------------------------------------------------


def test_family_read_from_model_index(folders):
    for name, folder in folders.items():
        assert family({"model": folder}).name == name


def test_capabilities_per_family(folders):
    caps = {name: capabilities({"model": folder}) for name, folder in folders.items()}
    for name, c in caps.items():
        assert c.motion_brush is False and c.camera is False, name
        assert c.multi_shot is True and c.aspect_ratio is True and c.negative_prompt is True, name
    assert {n for n, c in caps.items() if c.end_frame} == {"wan2.1-flf2v", "wan-vace", "ltx-video", "ltx-2"}
    assert {n for n, c in caps.items() if c.audio} == {"ltx-2"}
    # With no start image: the text-to-video checkpoints, TI2V-5B and the LTX condition pipelines.
    assert {n for n, c in caps.items() if c.text_to_video} == {
        "wan2.1-t2v", "wan2.2-t2v-a14b", "wan2.2-ti2v-5b", "wan-vace", "ltx-video", "ltx-2"}
    assert {n for n, c in caps.items() if not c.image_to_video} == {"wan2.1-t2v", "wan2.2-t2v-a14b"}
    # Reference images and elements' pictures: VACE only; element videos and voices: none.
    assert {n for n, c in caps.items() if c.reference_images} == {"wan-vace"}
    assert {n for n, c in caps.items() if c.elements} == {"wan-vace"}
    assert not any(c.element_video or c.voices for c in caps.values())
    # A guidance-distilled checkpoint (guidance 1) has no CFG for a negative prompt to act through.
    assert capabilities({"model": folders["ltx-video"], "guidance": 1}).negative_prompt is False


def test_family_defaults_and_overrides(folders):
    wan = family({"model": folders["wan2.1-i2v"]})
    assert (wan.fps, wan.frame_quantum, wan.resolution, wan.guidance, wan.steps) == (16, 4, (832, 480), 5.0, 40)
    ti2v = family({"model": folders["wan2.2-ti2v-5b"]})
    assert (ti2v.fps, ti2v.resolution, ti2v.size_multiple) == (24, (1280, 704), 32)
    ltx = family({"model": folders["ltx-video"], "steps": 8, "guidance": 1.0, "fps": 30, "resolution": "512x320"})
    assert (ltx.steps, ltx.guidance, ltx.fps, ltx.resolution, ltx.frame_quantum) == (8, 1.0, 30, (512, 320), 8)


def test_family_from_hub_name_and_explicit_option():
    # Hub ids not in the local cache: the name decides (no network is touched).
    assert family({"model": "Wan-AI/Wan2.2-TI2V-5B-Diffusers"}).name == "wan2.2-ti2v-5b"
    assert family({"model": "Wan-AI/Wan2.1-I2V-14B-720P-Diffusers"}).resolution == (1280, 720)
    assert family({"model": "Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers"}).name == "wan2.1-flf2v"
    assert family({"model": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"}).name == "wan2.1-t2v"
    assert family({"model": "Wan-AI/Wan2.2-T2V-A14B-Diffusers"}).name == "wan2.2-t2v-a14b"
    assert family({"model": "Wan-AI/Wan2.1-VACE-1.3B-diffusers"}).name == "wan-vace"
    assert family({"model": "Lightricks/LTX-2"}).name == "ltx-2"
    assert family({"model": "Lightricks/LTX-Video-0.9.7-distilled"}).name == "ltx-video"
    assert family({"model": "someone/finetune", "family": "ltx-2"}).capabilities().audio is True
    with pytest.raises(OptionsError, match="set the option family"):
        family({"model": "someone/finetune"})


def test_text_to_video_defaults(folders):
    t2v = family({"model": folders["wan2.1-t2v"]})
    assert (t2v.driver, t2v.fps, t2v.resolution, t2v.steps, t2v.guidance) == ("wan_t2v", 16, (832, 480), 50, 5.0)
    a14b = family({"model": folders["wan2.2-t2v-a14b"]})
    assert (a14b.steps, a14b.guidance, a14b.guidance_2) == (40, 4.0, 3.0)  # high- and low-noise experts
    assert family({"model": folders["wan2.2-t2v-a14b"], "guidance": 2.5}).guidance_2 is None  # both 2.5


def test_unsupported_checkpoints_are_refused_clearly(tmp_path):
    odd = metadata_folder(tmp_path, "Wan-odd", {"_class_name": "WanPipeline", "transformer": WAN},
                          {"in_channels": 20})
    with pytest.raises(OptionsError, match="in_channels 20"):
        capabilities({"model": odd})
    animate = metadata_folder(tmp_path, "Wan2.2-Animate-14B-Diffusers", {"_class_name": "WanAnimatePipeline"})
    with pytest.raises(OptionsError, match="WanAnimatePipeline"):
        capabilities({"model": animate})
    svd = metadata_folder(tmp_path, "svd", {"_class_name": "StableVideoDiffusionPipeline"})
    with pytest.raises(OptionsError, match="StableVideoDiffusionPipeline"):
        capabilities({"model": svd})
    with pytest.raises(OptionsError, match="does not exist"):
        capabilities({"model": str(tmp_path / "missing")})


def test_capabilities_import_neither_torch_nor_diffusers(folders):
    code = (
        "import sys; from stillreel.engines.diffusion import capabilities; "
        f"c = capabilities({{'model': {folders['ltx-2']!r}}}); "
        "print(c.audio, 'torch' in sys.modules, 'diffusers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.split() == ["True", "False", "False"]


# -- the config file -----------------------------------------------------------------------------


def test_config_file_binds_endpoints_to_models(folders, tmp_path):
    o3 = "fal-ai/kling-video/o3/standard/image-to-video"
    config = tmp_path / "stillreel.toml"
    config.write_text(
        f'[engine]\nname = "diffusion"\nmodel = "{folders["wan2.1-i2v"]}"\nsteps = 20\n\n'
        f'[endpoints."{o3}"]\nname = "diffusion"\nmodel = "{folders["ltx-2"]}"\ncache = "first_block"\n'
        'resolution = [512, 320]\n'
    )
    default, bindings = load_config_file(config)
    assert default == EngineSpec("diffusion", {"model": folders["wan2.1-i2v"], "steps": 20})
    assert engine_capabilities(default).audio is False
    assert engine_capabilities(bindings[o3]).audio is True and engine_capabilities(bindings[o3]).end_frame is True
    assert family(bindings[o3].options).resolution == (512, 320)
    assert family(default.options).steps == 20


# -- what each model is refused at submit (from metadata alone) ------------------------------------

KV = "fal-ai/kling-video/"
IMG = "https://x/s.png"


def admit(endpoint_id: str, payload: dict, caps, engine: str = "diffusion engine"):
    from stillreel.endpoints.registry import ENDPOINTS

    endpoint = ENDPOINTS[KV + endpoint_id]
    return endpoint.admit(endpoint.plan({"prompt": "a cat walks", **payload}), caps, engine)


def refusal(endpoint_id: str, payload: dict, caps, feature: str) -> dict:
    """The 422 item for ``feature`` (an image-to-video-only model also refuses the missing start image)."""
    from stillreel.endpoints.registry import InputError

    with pytest.raises(InputError) as err:
        admit(endpoint_id, payload, caps)
    assert all(item["type"] == "feature_not_supported" for item in err.value.detail)
    items = [item for item in err.value.detail if item["ctx"]["feature"] == feature]
    assert len(items) == 1, err.value.detail
    return items[0]


@pytest.mark.parametrize("endpoint_id, payload", [
    ("v1.6/pro/text-to-video", {}),
    ("v2.6/pro/text-to-video", {"generate_audio": False}),
    ("o3/standard/text-to-video", {"duration": "3"}),
    ("v3/turbo/pro/text-to-video", {}),
])
def test_text_to_video_ids_per_family(folders, endpoint_id, payload):
    for name, folder in folders.items():
        caps = capabilities({"model": folder})
        if caps.text_to_video:
            plan = admit(endpoint_id, payload, caps)
            assert plan.start_image_url is None, name
        else:  # Wan2.1 I2V, FLF2V, Wan2.2 I2V-A14B: image-to-video only
            refusal(endpoint_id, payload, caps, "text_to_video")


@pytest.mark.parametrize("endpoint_id, field", [
    ("v2.5-turbo/pro/image-to-video", "image_url"),
    ("v2.6/pro/image-to-video", "start_image_url"),
    ("o3/standard/image-to-video", "image_url"),
])
def test_image_to_video_ids_are_refused_by_text_only_models(folders, endpoint_id, field):
    payload = {field: IMG, **({"generate_audio": False} if "v2.6" in endpoint_id else {})}
    for name in ("wan2.1-t2v", "wan2.2-t2v-a14b"):
        item = refusal(endpoint_id, payload, capabilities({"model": folders[name]}), "image_to_video")
        assert item["loc"] == ["body", field], name
    for name in ("wan2.1-i2v", "wan2.2-ti2v-5b", "ltx-video", "ltx-2"):
        assert admit(endpoint_id, payload, capabilities({"model": folders[name]})).start_image_url == IMG


@pytest.mark.parametrize("endpoint_id, payload, field, feature", [
    ("o1/reference-to-video", {"image_urls": [IMG]}, "image_urls", "reference_images"),
    ("o3/standard/reference-to-video", {"image_urls": [IMG, IMG]}, "image_urls", "reference_images"),
    ("o3/pro/reference-to-video", {"start_image_url": IMG, "elements": [
        {"frontal_image_url": IMG, "reference_image_urls": [IMG]}]}, "elements", "elements"),
    ("v1.6/pro/elements", {"input_image_urls": [IMG, IMG]}, "input_image_urls", "reference_images"),
])
def test_reference_to_video_only_on_vace(folders, endpoint_id, payload, field, feature):
    for name, folder in folders.items():
        caps = capabilities({"model": folder})
        if name == "wan-vace":  # references (and elements' pictures) are VACE's reference images
            admit(endpoint_id, payload, caps)
            continue
        item = refusal(endpoint_id, payload, caps, feature)
        assert item["loc"] == ["body", field], name


def test_voices_are_refused_on_vace(folders):
    caps = capabilities({"model": folders["wan-vace"]})
    element = {"frontal_image_url": IMG, "reference_image_urls": [IMG]}
    # A voice bound to an element: VACE makes no speech (refused, whatever else is fine).
    refusal("o3/standard/reference-to-video", {"elements": [{**element, "voice_id": "v1"}]}, caps, "voices")


# -- sizes, frames, guidance ---------------------------------------------------------------------


def test_resolution_buckets():
    assert sizing.bucket((832, 480), 16, Aspect.LANDSCAPE, (1, 1)) == (832, 480)
    assert sizing.bucket((832, 480), 16, Aspect.PORTRAIT, (1, 1)) == (480, 832)
    assert sizing.bucket((832, 480), 16, Aspect.SQUARE, (1, 1)) == (624, 624)  # same area, to 16
    assert sizing.bucket((1280, 704), 32, Aspect.SQUARE, (1, 1)) == (960, 960)
    # No aspect: the bucket nearest the input's shape.
    assert sizing.bucket((832, 480), 16, None, (1920, 1080)) == (832, 480)
    assert sizing.bucket((832, 480), 16, None, (1080, 1920)) == (480, 832)
    assert sizing.bucket((832, 480), 16, None, (1000, 900)) == (624, 624)


@pytest.mark.parametrize(
    "seconds, fps, quantum, frames",
    [(5, 16, 4, 81), (10, 16, 4, 161), (5, 24, 8, 121), (3, 24, 8, 73), (5, 24, 4, 121), (1, 16, 4, 17)],
)
def test_frame_counts_on_the_quantum(seconds, fps, quantum, frames):
    assert sizing.frame_count(seconds, fps, quantum) == frames
    assert (frames - 1) % quantum == 0


def test_segments_chain_without_changing_the_frame_count():
    shots = (Shot("a", 7), Shot("b", 3))
    calls = sizing.segments(shots, fps=16, quantum=4, max_seconds=5)
    assert [(c.shot, c.seconds, c.frames) for c in calls] == [(0, 4, 65), (0, 3, 49), (1, 3, 49)]
    assert [c.prompt for c in calls] == ["a", "a", "b"]
    # Each continuation repeats its start frame, which is dropped: 10 s at 16 fps is 161 frames.
    assert sizing.total_frames(calls) == 161 == sizing.frame_count(10, 16, 4)
    assert sizing.split_seconds(15, 5) == [5, 5, 5] and sizing.split_seconds(5, 5) == [5]


def test_guidance_mapping():
    assert sizing.guidance_scale(0.0, 5.0) == 1.0  # off
    assert sizing.guidance_scale(0.5, 5.0) == 5.0  # the model card's value
    assert sizing.guidance_scale(1.0, 5.0) == 9.0
    assert sizing.guidance_scale(0.25, 3.0) == 2.0
    assert sizing.guidance_scale(0.5, 1.0) == 1.0  # a distilled model stays unguided


def test_fit_crops_to_the_bucket_aspect():
    img = np.zeros((100, 300, 3), np.uint8)
    img[:, 100:200] = 255  # a white band in the middle third
    out = np.asarray(sizing.fit(img, (64, 64)))
    assert out.shape == (64, 64, 3)
    assert out[:, 8:56].min() > 200  # the centre square survives the crop: all white


# -- a model folder's own defaults ----------------------------------------------------------------


def test_model_folder_defaults_and_what_overrides_them(folders):
    folder = Path(folders["ltx-video"])
    (folder / "stillreel.toml").write_text('steps = 8\nguidance = 1.0\nresolution = "512x320"\n')
    distilled = family({"model": str(folder)})
    assert (distilled.steps, distilled.guidance, distilled.resolution) == (8, 1.0, (512, 320))
    assert family({"model": str(folder), "steps": 12}).steps == 12  # the server's config wins
    assert capabilities({"model": str(folder)}).negative_prompt is False  # guidance 1: no CFG


@pytest.mark.parametrize(
    "text, words",
    [("stpes = 8\n", ["unknown option 'stpes'", "stillreel.toml"]),
     ('model = "/elsewhere"\n', ["may not set 'model'"]),
     ("steps = \n", ["cannot read"]),
     ("steps = 0\n", ["'steps'"])],
)
def test_model_folder_defaults_are_checked(folders, text, words):
    folder = Path(folders["wan2.1-i2v"])
    (folder / "stillreel.toml").write_text(text)
    with pytest.raises(OptionsError) as err:
        family({"model": str(folder)})
    for word in words:
        assert word in str(err.value)
