"""The Kling video family on fal, one declaration per endpoint id, made of shared field groups.

Source of truth: ``shared/reference/kling-catalogue.md`` (fal's own types) plus the seeds'
``v1/pro/image-to-video`` (retired by fal, still served) and the seed-only extras ``aspect_ratio`` and
``camera_control`` on ``v1/standard/image-to-video``.
"""

from __future__ import annotations

from dataclasses import dataclass

from stillreel.endpoints import kling as k
from stillreel.endpoints.price import Price

I2V, T2V, R2V, ELEMENTS = "image-to-video", "text-to-video", "reference-to-video", "elements"

# The distinct input shapes fal publishes (one per catalogue type), as lists of groups.
O1_I2V = [k.PROMPT, {"start_image_url": (str, k.Field(description="Image to use as the first frame of the video."))},
          k.END_IMAGE, k.DURATION_3_10]
O1_R2V = [k.PROMPT, k.ASPECT, k.DURATION_3_10, k.OMNI_ELEMENTS, k.REFERENCE_IMAGES]
O3_I2V = [k.PROMPT_OR_SHOTS, {"image_url": (str, k.Field(description="URL of the start frame image."))},
          k.END_IMAGE, k.DURATION_3_15, k.AUDIO_OFF, k.SHOT_TYPE]
O3_R2V = [k.PROMPT_OR_SHOTS, k.ASPECT, k.DURATION_3_15, k.COMBO_ELEMENTS, k.END_IMAGE, k.AUDIO_OFF,
          k.REFERENCE_IMAGES, k.SHOT_TYPE, k.START_IMAGE_OPTIONAL]
O3_T2V = [k.PROMPT_OR_SHOTS, k.ASPECT, k.DURATION_3_15, k.AUDIO_OFF, k.SHOT_TYPE]
CLASSIC_I2V = [k.PROMPT, k.IMAGE, k.DURATION_5_10, k.NEGATIVE_CFG]  # v2 master's shape
CLASSIC_T2V = [k.PROMPT, k.DURATION_5_10, k.NEGATIVE_CFG, k.ASPECT]  # v1.5 pro text-to-video's shape
V1_STANDARD_I2V = [*CLASSIC_I2V, k.TAIL_IMAGE, k.BRUSH, k.SEED_V1_EXTRAS]
V1_STANDARD_T2V = [*CLASSIC_T2V, k.CAMERA, k.ADVANCED_CAMERA]
V1_PRO_I2V = [k.PROMPT, k.IMAGE, k.DURATION_5_10, k.ASPECT]  # the seed
V15_PRO_I2V = [*CLASSIC_I2V, k.ASPECT, k.BRUSH, k.TAIL_IMAGE]
V16_PRO_I2V = [*CLASSIC_I2V, k.ASPECT, k.TAIL_IMAGE]
V16_ELEMENTS = [k.PROMPT, k.DURATION_5_10, k.NEGATIVE, k.ASPECT, k.INPUT_IMAGES]
V21_PRO_I2V = [*CLASSIC_I2V, k.TAIL_IMAGE]
V26_PRO_I2V = [k.PROMPT, k.START_IMAGE, k.DURATION_5_10, k.NEGATIVE, k.END_IMAGE, k.AUDIO_ON, k.VOICES]
V26_PRO_T2V = [*CLASSIC_T2V, k.AUDIO_ON]
V3_I2V = [k.PROMPT_OR_SHOTS, k.START_IMAGE, k.DURATION_3_15, k.NEGATIVE_CFG, k.COMBO_ELEMENTS, k.END_IMAGE,
          k.AUDIO_ON, k.SHOT_TYPE]
V3_T2V = [k.PROMPT_OR_SHOTS, k.DURATION_3_15, k.NEGATIVE_CFG, k.ASPECT, k.AUDIO_ON, k.SHOT_TYPE]
V3_TURBO_I2V = [k.PROMPT_OR_SHOTS, k.IMAGE, k.DURATION_3_15]
V3_TURBO_T2V = [k.PROMPT_OR_SHOTS, k.ASPECT, k.DURATION_3_15]


@dataclass(frozen=True)
class Declaration:
    path: str  # the id after "fal-ai/kling-video/"
    groups: list
    price: Price = Price()
    description: str = ""

    @property
    def id(self) -> str:
        return f"fal-ai/kling-video/{self.path}"

    @property
    def kind(self) -> str:
        return self.path.rsplit("/", 1)[1]


def _d(path, groups, price=Price(), description=""):
    return Declaration(path, groups, price, description)


DECLARATIONS: list[Declaration] = [
    # -- image-to-video (21 + the seed v1/pro) --
    _d("v1/standard/image-to-video", V1_STANDARD_I2V, Price(per_second=0.045),
       "Image to video with motion brush (static and dynamic masks), tail image and camera presets."),
    _d("v1/pro/image-to-video", V1_PRO_I2V, description="Image to video with a chosen aspect ratio."),
    _d("v1.5/pro/image-to-video", V15_PRO_I2V, description="Image to video with motion brush and tail image."),
    _d("v1.6/standard/image-to-video", CLASSIC_I2V),
    _d("v1.6/pro/image-to-video", V16_PRO_I2V, description="Image to video with a tail image."),
    _d("v2/master/image-to-video", CLASSIC_I2V, Price(first_5s=1.40, per_second=0.28),
       "Image to video with negative prompt and CFG scale."),
    _d("v2.1/standard/image-to-video", CLASSIC_I2V, Price(first_5s=0.28, per_second=0.056)),
    _d("v2.1/pro/image-to-video", V21_PRO_I2V, Price(first_5s=0.49, per_second=0.098),
       description="Image to video with a tail image."),
    _d("v2.1/master/image-to-video", CLASSIC_I2V, Price(first_5s=1.40, per_second=0.28)),
    _d("v2.5-turbo/standard/image-to-video", CLASSIC_I2V, Price(first_5s=0.21, per_second=0.042),
       "Image to video with negative prompt and CFG scale, tuned for speed."),
    _d("v2.5-turbo/pro/image-to-video", V21_PRO_I2V, Price(first_5s=0.35, per_second=0.07),
       description="Image to video with a tail image, tuned for speed."),
    _d("v2.6/pro/image-to-video", V26_PRO_I2V, description="Start and end frame, audio on by default, voices."),
    _d("v3/standard/image-to-video", V3_I2V, Price(per_second=0.084, audio_per_second=0.126, voice_per_second=0.154),
       description="3-15 s, elements, end frame, multi-shot, audio on by default."),
    # v3 pro: two copies of fal's page disagree by 2x (fal-protocol.md §14.2), so no price is claimed.
    _d("v3/pro/image-to-video", V3_I2V, description="3-15 s, elements, end frame, multi-shot, audio on by default."),
    _d("v3/4k/image-to-video", V3_I2V, description="4K: elements, end frame, multi-shot, audio on by default."),
    _d("v3/turbo/standard/image-to-video", V3_TURBO_I2V, Price(per_second=0.112),
       description="Fast 3-15 s image to video with a storyboard."),
    _d("v3/turbo/pro/image-to-video", V3_TURBO_I2V, description="Fast 3-15 s image to video with a storyboard."),
    _d("o1/image-to-video", O1_I2V, description="Start and end frame, 3-10 s."),
    _d("o1/standard/image-to-video", O1_I2V, description="Start and end frame, 3-10 s."),
    _d("o3/standard/image-to-video", O3_I2V, Price(per_second=0.084, audio_per_second=0.112),
       "Image to video, 3-15 s, end frame, multi-shot prompts and an audio flag."),
    _d("o3/pro/image-to-video", O3_I2V, description="Image to video, 3-15 s, end frame, multi-shot, audio flag."),
    _d("o3/4k/image-to-video", O3_I2V, description="4K image to video, 3-15 s, end frame, multi-shot, audio flag."),
    # -- text-to-video (16) --
    _d("v1/standard/text-to-video", V1_STANDARD_T2V, description="Text to video with camera presets."),
    _d("v1.5/pro/text-to-video", CLASSIC_T2V),
    _d("v1.6/standard/text-to-video", CLASSIC_T2V),
    _d("v1.6/pro/text-to-video", CLASSIC_T2V),
    _d("v2/master/text-to-video", CLASSIC_T2V, Price(first_5s=1.40, per_second=0.28)),
    _d("v2.1/master/text-to-video", CLASSIC_T2V),
    _d("v2.5-turbo/pro/text-to-video", CLASSIC_T2V),
    _d("v2.6/pro/text-to-video", V26_PRO_T2V, description="Text to video, audio on by default."),
    _d("v3/standard/text-to-video", V3_T2V, description="Text to video, 3-15 s, multi-shot, audio on by default."),
    _d("v3/pro/text-to-video", V3_T2V, description="Text to video, 3-15 s, multi-shot, audio on by default."),
    _d("v3/4k/text-to-video", V3_T2V, description="4K text to video, multi-shot, audio on by default."),
    _d("v3/turbo/standard/text-to-video", V3_TURBO_T2V, description="Fast text to video with a storyboard."),
    _d("v3/turbo/pro/text-to-video", V3_TURBO_T2V, description="Fast text to video with a storyboard."),
    _d("o3/standard/text-to-video", O3_T2V, description="Text to video, 3-15 s, multi-shot, audio flag."),
    _d("o3/pro/text-to-video", O3_T2V, description="Text to video, 3-15 s, multi-shot, audio flag."),
    _d("o3/4k/text-to-video", O3_T2V, description="4K text to video, 3-15 s, multi-shot, audio flag."),
    # -- reference-to-video (5) --
    _d("o1/reference-to-video", O1_R2V, description="Elements and reference images (@Element1, @Image1)."),
    _d("o1/standard/reference-to-video", O1_R2V, description="Elements and reference images (@Element1, @Image1)."),
    _d("o3/standard/reference-to-video", O3_R2V, description="Elements, reference images, start/end frame, multi-shot."),
    _d("o3/pro/reference-to-video", O3_R2V, description="Elements, reference images, start/end frame, multi-shot."),
    _d("o3/4k/reference-to-video", O3_R2V, description="4K: elements, reference images, start/end frame, multi-shot."),
    # -- elements (2) --
    _d("v1.6/standard/elements", V16_ELEMENTS, description="Up to 4 images of elements composed into one video."),
    _d("v1.6/pro/elements", V16_ELEMENTS, description="Up to 4 images of elements composed into one video."),
]
