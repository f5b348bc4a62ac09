"""Model families: what each supported checkpoint is, can do, and wants by default.

``detect(options)`` tells the family from the checkpoint's small JSON files (``model_index.json``,
``transformer/config.json``) — never from weights — so the API process can answer
``capabilities`` at once. A hub id is looked up in the local Hugging Face cache, then by name.
The defaults are the model cards' (steps, guidance, native fps, resolution); options override them.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from stillreel.engines.base import Capabilities
from stillreel.engines.diffusion.options import FAMILIES, DiffusionOptions, OptionsError

WAN_NEGATIVE = (
    "bright tones, overexposed, static, blurred details, subtitles, style, works, paintings, images, "
    "static, overall gray, worst quality, low quality, JPEG compression residue, ugly, incomplete, extra "
    "fingers, poorly drawn hands, poorly drawn faces, deformed, disfigured, misshapen limbs, fused fingers, "
    "still picture, messy background, three legs, many people in the background, walking backwards"
)
LTX_NEGATIVE = "worst quality, inconsistent motion, blurry, jittery, distorted"


@dataclass(frozen=True)
class Family:
    name: str  # one of options.FAMILIES
    driver: str  # the module that drives the pipeline: "wan", "wan_t2v", "vace", "ltx" or "ltx2"
    fps: int  # native frame rate
    frame_quantum: int  # frame counts are frame_quantum * k + 1 (the VAE's temporal compression)
    size_multiple: int  # width and height are multiples of this (VAE spatial compression × patch)
    resolution: tuple[int, int]  # the landscape bucket (width, height)
    steps: int
    guidance: float  # the recommended guidance scale: what cfg_scale 0.5 maps to
    max_seconds: int  # the longest span one pipeline call makes; longer shots chain segments
    end_frame: bool
    audio: bool = False
    negative_prompt: str = ""
    image_to_video: bool = True  # a start image conditions frame 0
    text_to_video: bool = False  # runs from the prompt alone
    guidance_2: float | None = None  # Wan2.2 A14B T2V: the low-noise expert's own recommended scale
    reference_images: bool = False  # subject/style references (Kling's image_urls and elements)

    def capabilities(self) -> Capabilities:
        return Capabilities(
            text_to_video=self.text_to_video,
            image_to_video=self.image_to_video,
            end_frame=self.end_frame,
            motion_brush=False,  # no trajectory conditioning in these diffusers pipelines
            camera=False,  # no camera conditioning either (camera LoRAs are not wired)
            # Shots are made one after another, each from the previous one's last frame (a text-only
            # model starts each shot afresh: a hard cut).
            multi_shot=True,
            audio=self.audio,
            negative_prompt=self.guidance > 1.0,  # a negative prompt only acts through CFG
            aspect_ratio=True,
            # Kling's reference images and its elements' pictures both become the model's references
            # (an element given as a video, and voices, stay unsupported).
            reference_images=self.reference_images,
            elements=self.reference_images,
        )


_DEFAULTS = {
    # Wan2.1 I2V 14B: official sample_steps 40 for i2v, guidance 5.0, 81 frames at 16 fps.
    "wan2.1-i2v": Family("wan2.1-i2v", "wan", 16, 4, 16, (832, 480), 40, 5.0, 5, end_frame=False,
                         negative_prompt=WAN_NEGATIVE),
    # Wan2.1 FLF2V 14B 720P: first and last frame (`last_image`), 50 steps.
    "wan2.1-flf2v": Family("wan2.1-flf2v", "wan", 16, 4, 16, (1280, 720), 50, 5.0, 5, end_frame=True,
                           negative_prompt=WAN_NEGATIVE),
    # Wan2.2 I2V-A14B: two experts; guidance (3.5, 3.5), 40 steps. 480P default (720P: resolution option).
    "wan2.2-i2v-a14b": Family("wan2.2-i2v-a14b", "wan", 16, 4, 16, (832, 480), 40, 3.5, 5, end_frame=False,
                              negative_prompt=WAN_NEGATIVE),
    # Wan2.2 TI2V-5B: 1280×704 at 24 fps, 121 frames; 16× VAE × 2 patch = multiples of 32. Text and
    # image to video in one checkpoint: with no image it runs as WanPipeline on the same weights.
    "wan2.2-ti2v-5b": Family("wan2.2-ti2v-5b", "wan", 24, 4, 32, (1280, 704), 50, 5.0, 5, end_frame=False,
                             negative_prompt=WAN_NEGATIVE, text_to_video=True),
    # Text-only models cannot continue from a frame, so a whole shot is one call (max_seconds 15 covers
    # Kling's longest shot); each further shot starts afresh.
    # Wan2.1 T2V 1.3B / 14B (WanPipeline, 16 latent channels in): 50 steps, guidance 5, 832×480 at 16 fps.
    "wan2.1-t2v": Family("wan2.1-t2v", "wan_t2v", 16, 4, 16, (832, 480), 50, 5.0, 15, end_frame=False,
                         negative_prompt=WAN_NEGATIVE, image_to_video=False, text_to_video=True),
    # Wan2.2 T2V-A14B: two experts; the card's guidance is 4.0 (high noise) and 3.0 (low noise), 40 steps.
    "wan2.2-t2v-a14b": Family("wan2.2-t2v-a14b", "wan_t2v", 16, 4, 16, (832, 480), 40, 4.0, 15, end_frame=False,
                              negative_prompt=WAN_NEGATIVE, image_to_video=False, text_to_video=True,
                              guidance_2=3.0),
    # Wan VACE (WanVACEPipeline, Wan2.1-VACE 1.3B/14B): text, start/end frames as a masked video, and
    # reference images of subjects; 832×480 at 16 fps, 50 steps, guidance 5.
    "wan-vace": Family("wan-vace", "vace", 16, 4, 16, (832, 480), 50, 5.0, 5, end_frame=True,
                       negative_prompt=WAN_NEGATIVE, text_to_video=True, reference_images=True),
    # LTX-Video 0.9.x through LTXConditionPipeline (keyframes at any index, or none: text to video):
    # 768×512 at 24 fps, 8k+1 frames.
    "ltx-video": Family("ltx-video", "ltx", 24, 8, 32, (768, 512), 40, 3.0, 10, end_frame=True,
                        negative_prompt=LTX_NEGATIVE, text_to_video=True),
    # LTX-2: joint audio and video; guidance 3.0 (audio 7.0, scaled together), 8k+1 frames at 24 fps;
    # without conditions LTX2ConditionPipeline is text to video (and audio).
    "ltx-2": Family("ltx-2", "ltx2", 24, 8, 32, (768, 512), 40, 3.0, 10, end_frame=True, audio=True,
                    negative_prompt=LTX_NEGATIVE, text_to_video=True),
}
assert set(_DEFAULTS) == set(FAMILIES)


def resolve(options: DiffusionOptions) -> Family:
    """The family of ``options.model`` with the options' overrides applied."""
    family = _DEFAULTS[options.family or detect_name(options.model)]
    if family.name in ("wan2.1-i2v", "wan2.2-i2v-a14b", "wan2.1-t2v", "wan2.2-t2v-a14b") \
            and "720p" in options.model.lower():
        family = replace(family, resolution=(1280, 720))
    if options.guidance is not None:
        family = replace(family, guidance_2=None)  # a guidance option sets both experts alike
    overrides = {
        "steps": options.steps,
        "guidance": options.guidance,
        "fps": options.fps,
        "resolution": options.resolution,
        "max_seconds": options.max_seconds,
    }
    return replace(family, **{k: v for k, v in overrides.items() if v is not None})


def detect_name(model: str) -> str:
    """The family name of a checkpoint folder or hub id, from its JSON metadata or its name."""
    index = _read_json(model, "model_index.json")
    if index is not None:
        return _from_index(model, index)
    guess = _from_name(model)
    if guess is None:
        where = "folder" if _is_local(model) else "hub id (not in the local cache)"
        raise OptionsError(
            f"diffusion engine: cannot tell the model family of {model!r}: no model_index.json in that "
            f"{where} and the name matches no known model; set the option family = one of {', '.join(FAMILIES)}"
        )
    return guess


def _from_index(model: str, index: dict) -> str:
    cls = str(index.get("_class_name", ""))
    if cls.startswith("LTX2"):
        return "ltx-2"
    if cls.startswith("LTX"):
        return "ltx-video"
    if cls == "WanVACEPipeline":
        return "wan-vace"
    if cls.startswith("Wan") and "VACE" not in cls and "Animate" not in cls:
        transformer = _read_json(model, "transformer/config.json") or {}
        if index.get("expand_timesteps"):
            return "wan2.2-ti2v-5b"
        two_experts = (index.get("transformer_2") or [None])[0] is not None
        # Text-to-video transformers take the 16 noise channels alone; image-to-video ones 36
        # (noise + the image's latents + a 4-channel frame mask).
        in_channels = transformer.get("in_channels", 36)
        if in_channels == 16:
            return "wan2.2-t2v-a14b" if two_experts else "wan2.1-t2v"
        if in_channels != 36:
            raise OptionsError(
                f"diffusion engine: {model!r} is a Wan checkpoint with transformer in_channels {in_channels}, "
                "neither text-to-video (16) nor image-to-video (36)"
            )
        if two_experts:
            return "wan2.2-i2v-a14b"
        if transformer.get("pos_embed_seq_len"):
            return "wan2.1-flf2v"
        return "wan2.1-i2v"
    raise OptionsError(
        f"diffusion engine: {model!r} is a {cls or 'unknown'} checkpoint; supported: Wan (Wan2.1 I2V/FLF2V/T2V/VACE, "
        "Wan2.2 I2V-A14B/T2V-A14B/TI2V-5B), LTX-Video 0.9.x and LTX-2"
    )


_NAME_PATTERNS = [
    (r"ltx-?2", "ltx-2"),
    (r"ltx", "ltx-video"),
    (r"wan.*vace", "wan-vace"),
    (r"wan2\.2.*ti2v", "wan2.2-ti2v-5b"),
    (r"wan2\.2.*t2v", "wan2.2-t2v-a14b"),
    (r"wan.*t2v", "wan2.1-t2v"),
    (r"wan2\.2.*i2v", "wan2.2-i2v-a14b"),
    (r"wan.*flf2v", "wan2.1-flf2v"),
    (r"wan.*i2v", "wan2.1-i2v"),
]


def _from_name(model: str) -> str | None:
    name = model.lower()
    for pattern, family in _NAME_PATTERNS:
        if re.search(pattern, name):
            return family
    return None


def _is_local(model: str) -> bool:
    return os.path.isabs(model) or model.startswith(".") or os.path.exists(model) or model.count("/") != 1


def _read_json(model: str, filename: str) -> dict | None:
    """A small metadata file of a local folder, or of a hub id already in the Hugging Face cache."""
    if _is_local(model):
        if not Path(model).is_dir():
            raise OptionsError(f"diffusion engine: model folder {model!r} does not exist")
        path = Path(model) / filename
        return json.loads(path.read_text()) if path.is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    cached = try_to_load_from_cache(model, filename)
    return json.loads(Path(cached).read_text()) if isinstance(cached, str) else None
