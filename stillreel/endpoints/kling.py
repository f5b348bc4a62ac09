"""The five seed endpoints' input and output schemas, field for field as fal publishes them.

Names, types, defaults, enums and ranges follow the seed documents (``shared/seeds``); where a
page's prose disagrees with its schema section, the schema wins. Checks that fal's schemas do not
publish (mask counts, trajectory lengths, shot totals) live in ``registry.plan`` so that the JSON
schema stays exactly fal's.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

DEFAULT_NEGATIVE_PROMPT = "blur, distort, and low quality"
MAX_DYNAMIC_MASKS = 6
TRAJECTORY_POINTS = (2, 77)


def _number_to_str(value):
    # fal's durations are string enums; clients often send 5 rather than "5". Accept both.
    if isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer():
        return str(int(value))
    return value


Duration5or10 = Annotated[Literal["5", "10"], BeforeValidator(_number_to_str)]
Duration3to15 = Annotated[
    Literal["3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15"],
    BeforeValidator(_number_to_str),
]
ShotDuration = Annotated[
    Literal["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15"],
    BeforeValidator(_number_to_str),
]
AspectRatio = Literal["16:9", "9:16", "1:1"]
CameraControl = Literal["down_back", "forward_up", "right_turn_forward", "left_turn_forward"]


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


_PROMPT = "The prompt for the video"
_IMAGE = "URL of the image to be used for the video"
_DURATION = "The duration of the generated video in seconds"
_NEGATIVE = "The negative prompt for the video"
_CFG = (
    "The CFG (Classifier Free Guidance) scale is a measure of how close you want the model to "
    "stick to your prompt."
)


class KlingV1ProInput(_Input):
    prompt: str = Field(description=_PROMPT)
    image_url: str = Field(description=_IMAGE)
    duration: Duration5or10 = Field("5", description=_DURATION)
    aspect_ratio: AspectRatio = Field("16:9", description="The aspect ratio of the generated video frame")


class KlingV2MasterInput(_Input):
    prompt: str = Field(description=_PROMPT)
    image_url: str = Field(description=_IMAGE)
    duration: Duration5or10 = Field("5", description=_DURATION)
    negative_prompt: str = Field(DEFAULT_NEGATIVE_PROMPT, description=_NEGATIVE)
    cfg_scale: float = Field(0.5, ge=0, le=1, description=_CFG)


class KlingV25TurboStandardInput(KlingV2MasterInput):
    pass


class KlingV1StandardInput(KlingV2MasterInput):
    # v2 master's fields first (same names, defaults and order), then v1's extras.
    tail_image_url: str | None = Field(
        None, description="URL of the image to be used for the end of the video"
    )
    static_mask_url: str | None = Field(
        None,
        description="URL of the image for Static Brush Application Area "
        "(Mask image created by users using the motion brush)",
    )
    dynamic_masks: list[DynamicMask] | None = Field(None, description="List of dynamic masks")
    # Named in the seed's "Limitations"; optional, so the published examples stay valid.
    aspect_ratio: AspectRatio | None = Field(
        None, description="The aspect ratio of the generated video frame"
    )
    camera_control: CameraControl | None = Field(None, description="Camera control parameters")


class KlingO3StandardInput(_Input):
    prompt: str | None = Field(
        None,
        description="Text prompt for video generation. Either prompt or multi_prompt must be "
        "provided, but not both.",
    )
    image_url: str = Field(description="URL of the start frame image.")
    end_image_url: str | None = Field(None, description="URL of the end frame image (optional).")
    duration: Duration3to15 = Field("5", description="Video duration in seconds (3-15s).")
    generate_audio: bool = Field(False, description="Whether to generate native audio for the video.")
    multi_prompt: list[MultiPromptElement] | None = Field(
        None, description="List of prompts for multi-shot video generation."
    )
    shot_type: str = Field("customize", description="The type of multi-shot video generation.")

