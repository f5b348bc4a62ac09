"""fal's Kling field groups: the building blocks every endpoint's input schema is made of.

Names, types, defaults, enums and ranges follow fal's own types (``shared/reference/kling-catalogue.md``)
and, for the seeds, ``shared/seeds``. Each group is a dict ``fal field -> (annotation, Field)``;
``family.py`` declares each endpoint id as a list of groups and ``build_input`` turns that into a
pydantic model. Checks fal's schemas do not publish (mask counts, shot totals, voice counts) live in
``rules.py`` so that the JSON schema stays exactly fal's.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

DEFAULT_NEGATIVE_PROMPT = "blur, distort, and low quality"


def _number_to_str(value):
    # fal's durations are string enums; clients often send 5 rather than "5". Accept both.
    if isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer():
        return str(int(value))
    return value


def _seconds(lo: int, hi: int):
    return Annotated[Literal[tuple(str(n) for n in range(lo, hi + 1))], BeforeValidator(_number_to_str)]


Duration5or10 = Annotated[Literal["5", "10"], BeforeValidator(_number_to_str)]
Duration3to10 = _seconds(3, 10)
Duration3to15 = _seconds(3, 15)
ShotDuration = _seconds(1, 15)
AspectRatio = Literal["16:9", "9:16", "1:1"]
CameraPreset = Literal["down_back", "forward_up", "right_turn_forward", "left_turn_forward"]
ShotTypeName = Literal["customize", "intelligent"]


class _Input(BaseModel):
    # Unknown fields are ignored, as fal does; nothing the caller sends is echoed back.
    model_config = ConfigDict(extra="ignore")


class File(BaseModel):
    url: str = Field(description="The URL where the file can be downloaded from.")
    content_type: str | None = Field(None, description="The mime type of the file.")
    file_name: str | None = Field(
        None, description="The name of the file. It will be auto-generated if not provided."
    )
    file_size: int | None = Field(None, description="The size of the file in bytes.")


class VideoOutput(BaseModel):
    video: File = Field(description="The generated video")


class Trajectory(BaseModel):
    x: float = Field(description="X coordinate of the motion trajectory")
    y: float = Field(description="Y coordinate of the motion trajectory")


class DynamicMask(BaseModel):
    mask_url: str = Field(
        description="URL of the image for Dynamic Brush Application Area "
        "(Mask image created by users using the motion brush)"
    )
    trajectories: list[Trajectory] | None = Field(None, description="List of trajectories")


class MultiPromptElement(BaseModel):
    prompt: str = Field(description="The prompt for this shot.")
    duration: ShotDuration = Field("5", description="The duration of this shot in seconds.")


class OmniVideoElementInput(BaseModel):
    frontal_image_url: str = Field(description="The frontal image of the element (main view).")
    reference_image_urls: list[str] | None = Field(
        None, description="Additional reference images from different angles. 1-3 images supported. "
        "At least one image is required."
    )


class KlingV3ComboElementInput(BaseModel):
    frontal_image_url: str | None = Field(None, description="The frontal image of the element (main view).")
    reference_image_urls: list[str] | None = Field(
        None, description="Additional reference images from different angles. 1-3 images supported. "
        "At least one image is required."
    )
    video_url: str | None = Field(
        None, description="The video URL of the element. A request can only have one element with a video."
    )
    voice_id: str | None = Field(None, description="The voice ID for this element.")


class CameraControl(BaseModel):
    movement_type: Literal["horizontal", "vertical", "pan", "tilt", "roll", "zoom"] = Field(
        description="The type of camera movement"
    )
    movement_value: float = Field(description="The value of the camera movement")


_CFG = (
    "The CFG (Classifier Free Guidance) scale is a measure of how close you want the model to "
    "stick to your prompt."
)
_ONE_OF = "Text prompt for video generation. Either prompt or multi_prompt must be provided, but not both."

Group = dict[str, tuple[Any, Any]]

# -- the field groups ---------------------------------------------------------------------------
PROMPT: Group = {"prompt": (str, Field(description="The prompt for the video"))}
PROMPT_OR_SHOTS: Group = {
    "prompt": (str | None, Field(None, description=_ONE_OF)),
    "multi_prompt": (list[MultiPromptElement] | None,
                     Field(None, description="List of prompts for multi-shot video generation.")),
}
SHOT_TYPE: Group = {"shot_type": (ShotTypeName, Field(
    "customize", description="The type of multi-shot video generation. 'intelligent' lets the model "
    "automatically determine shot structure."))}
IMAGE: Group = {"image_url": (str, Field(description="URL of the image to be used for the video"))}
START_IMAGE: Group = {"start_image_url": (str, Field(description="URL of the image to be used for the video"))}
START_IMAGE_OPTIONAL: Group = {"start_image_url": (str | None, Field(
    None, description="Image to use as the first frame of the video."))}
TAIL_IMAGE: Group = {"tail_image_url": (str | None, Field(
    None, description="URL of the image to be used for the end of the video"))}
END_IMAGE: Group = {"end_image_url": (str | None, Field(None, description="URL of the end frame image (optional)."))}
DURATION_5_10: Group = {"duration": (Duration5or10, Field("5", description="The duration of the generated video in seconds"))}
DURATION_3_10: Group = {"duration": (Duration3to10, Field("5", description="Video duration in seconds."))}
DURATION_3_15: Group = {"duration": (Duration3to15, Field("5", description="Video duration in seconds (3-15s)."))}
NEGATIVE: Group = {"negative_prompt": (str, Field(DEFAULT_NEGATIVE_PROMPT, description="The negative prompt for the video"))}
CFG: Group = {"cfg_scale": (float, Field(0.5, ge=0, le=1, description=_CFG))}
NEGATIVE_CFG: Group = {**NEGATIVE, **CFG}
ASPECT: Group = {"aspect_ratio": (AspectRatio, Field("16:9", description="The aspect ratio of the generated video frame"))}
BRUSH: Group = {
    "static_mask_url": (str | None, Field(
        None, description="URL of the image for Static Brush Application Area "
        "(Mask image created by users using the motion brush)")),
    "dynamic_masks": (list[DynamicMask] | None, Field(None, description="List of dynamic masks")),
}
AUDIO_OFF: Group = {"generate_audio": (bool, Field(False, description="Whether to generate native audio for the video."))}
AUDIO_ON: Group = {"generate_audio": (bool, Field(True, description="Whether to generate native audio for the video."))}
VOICES: Group = {"voice_ids": (list[str] | None, Field(
    None, description="Optional Voice IDs for video generation. Reference voices in your prompt with "
    "<<<voice_1>>> and <<<voice_2>>> (maximum 2 voices per task)."))}
OMNI_ELEMENTS: Group = {"elements": (list[OmniVideoElementInput] | None, Field(
    None, description="Elements (characters/objects) to include in the video. Reference in prompt as "
    "@Element1, @Element2, etc. Maximum 7 total (elements + reference images + start image)."))}
COMBO_ELEMENTS: Group = {"elements": (list[KlingV3ComboElementInput] | None, Field(
    None, description="Elements (characters/objects) to include. Reference in prompt as @Element1, @Element2."))}
REFERENCE_IMAGES: Group = {"image_urls": (list[str] | None, Field(
    None, description="Reference images for style/appearance. Reference in prompt as @Image1, @Image2, etc."))}
INPUT_IMAGES: Group = {"input_image_urls": (list[str], Field(
    description="List of image URLs to use for video generation. Supports up to 4 images."))}
# Seed-only extras on v1 standard image-to-video (named in the seed's "Limitations"; optional).
SEED_V1_EXTRAS: Group = {
    "aspect_ratio": (AspectRatio | None, Field(None, description="The aspect ratio of the generated video frame")),
    "camera_control": (CameraPreset | None, Field(None, description="Camera control parameters")),
}
CAMERA: Group = {"camera_control": (CameraPreset | None, Field(None, description="Camera control parameters"))}
ADVANCED_CAMERA: Group = {"advanced_camera_control": (CameraControl | None, Field(
    None, description="Advanced Camera control parameters"))}


def build_input(name: str, groups: list[Group]) -> type[BaseModel]:
    """One pydantic input model from field groups (later groups override earlier ones)."""
    fields: Group = {}
    for group in groups:
        fields.update(group)
    return create_model(name, __base__=_Input, **fields)
