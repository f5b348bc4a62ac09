"""The seam between endpoints and engines.

Endpoints speak fal's field names; engines only ever see a ``GenerationRequest``: decoded
images, masks in input-image pixels (top-left origin), shots and plain numbers. An engine
declares what it honours in ``Capabilities`` so the API can refuse what it cannot do at submit
time (422 ``feature_not_supported``) instead of failing minutes later.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol, runtime_checkable

import numpy as np

# The one error type of a request that cannot be served (fal's status, error type, loc and
# message) is defined with the whole error model in stillreel.errors; the engines import it here.
from stillreel.errors import EngineError  # noqa: F401 (re-exported)

# An RGB image, uint8, shape (height, width, 3).
Image = np.ndarray
# A mask, uint8 0..255 (255 = selected), shape (height, width), same size as the start image.
Mask = np.ndarray


class Aspect(str, Enum):
    LANDSCAPE = "16:9"
    PORTRAIT = "9:16"
    SQUARE = "1:1"


class CameraPreset(str, Enum):
    DOWN_BACK = "down_back"
    FORWARD_UP = "forward_up"
    RIGHT_TURN_FORWARD = "right_turn_forward"
    LEFT_TURN_FORWARD = "left_turn_forward"


class Tier(str, Enum):
    """The endpoint's output tier; the engine picks the frame size for (tier, aspect)."""

    STANDARD = "standard"
    PRO = "pro"
    UHD = "4k"


class ShotType(str, Enum):
    CUSTOMIZE = "customize"  # the shots are given (multi_prompt) or there is one shot
    INTELLIGENT = "intelligent"  # one prompt; the engine splits it into shots itself


@dataclass(frozen=True)
class Shot:
    prompt: str
    seconds: int


@dataclass(frozen=True)
class Element:
    """A character or object the video must show (fal's ``elements``): a frontal image and
    optional extra views of it, with the voice bound to it (if any)."""

    frontal: Image
    references: tuple[Image, ...] = ()
    voice_id: str | None = None
    # Given as a video (fal's elements[].video_url): the video's first frame. Without a frontal
    # image it is also ``frontal`` (the same array), so code that reads only ``frontal`` works.
    video_frame: Image | None = None


@dataclass(frozen=True)
class BrushPath:
    """One of fal's ``dynamic_masks`` in engine terms: the region that moves, and where it goes."""

    mask: Mask
    # Points in input-image pixels, top-left origin (Kling's bottom-left origin is converted
    # when the request is built), in order of travel.
    trajectory: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class GenerationRequest:
    start_image: Image | None  # None: text-to-video (or reference-to-video without a start frame)
    shots: tuple[Shot, ...]  # a single prompt is one shot; their seconds add up to `seconds`
    seconds: int
    guidance: float = 0.5  # fal's cfg_scale, 0..1
    negative_prompt: str | None = None
    end_image: Image | None = None
    aspect: Aspect | None = None  # None: follow the input image's orientation
    camera: CameraPreset | None = None
    static_mask: Mask | None = None
    dynamic_masks: tuple[BrushPath, ...] = ()
    audio: bool = False
    seed: int = 0
    tier: Tier = Tier.STANDARD
    shot_type: ShotType = ShotType.CUSTOMIZE
    reference_images: tuple[Image, ...] = ()  # style/appearance references (@Image1, @Image2 …)
    elements: tuple[Element, ...] = ()  # @Element1, @Element2 …
    voices: tuple[str, ...] = ()  # voice ids (<<<voice_1>>>, <<<voice_2>>>), at most two
    # fal's advanced_camera_control: (movement_type, movement_value), e.g. ("zoom", 5.0)
    advanced_camera: tuple[str, float] | None = None

    @property
    def prompt(self) -> str:
        return " ".join(s.prompt for s in self.shots if s.prompt)


@dataclass(frozen=True)
class Capabilities:
    """What an engine honours. A request using anything marked False is refused with 422."""

    end_frame: bool = False
    motion_brush: bool = False
    camera: bool = False
    multi_shot: bool = False
    audio: bool = False
    negative_prompt: bool = False
    aspect_ratio: bool = True
    text_to_video: bool = False  # no start image: the engine makes the first frame
    image_to_video: bool = True  # a start image conditions the first frame (False: a text-only model)
    reference_images: bool = False
    elements: bool = False
    voices: bool = False
    intelligent_shots: bool = False
    element_video: bool = False  # an element given as a video (fal's elements[].video_url)
    advanced_camera: bool = False  # fal's advanced_camera_control (movement type + value)


@dataclass
class Audio:
    samples: np.ndarray  # float32, shape (channels, n), -1..1
    sample_rate: int


@dataclass
class Clip:
    """What an engine returns: frames streamed into the encoder, never held all at once.

    ``frames`` yields numpy arrays in ``pix_fmt``: ``"rgb24"`` arrays of shape (h, w, 3), or
    ``"yuv420p"`` arrays of shape (h * 3 // 2, w) (I420 planes stacked, as PyAV expects).
    """

    fps: int
    width: int
    height: int
    frame_count: int
    frames: Iterator[np.ndarray]
    pix_fmt: str = "rgb24"
    audio: Audio | None = None
    # Engine facts worth recording with the result (e.g. {"engine": "motion"}).
    info: dict = field(default_factory=dict)


class Cancelled(Exception):
    """Raised by ``Progress.report`` once the job was cancelled; engines let it propagate."""


class Progress(Protocol):
    def report(self, fraction: float, message: str | None = None) -> None:
        """Record progress (0..1) and optionally a log line; raises ``Cancelled`` if cancelled."""

    def log(self, message: str, level: str = "INFO") -> None:
        """Add a log line without changing the progress figure."""

    @property
    def cancelled(self) -> bool: ...


@runtime_checkable
class Engine(Protocol):
    name: str
    capabilities: Capabilities

    def generate(self, request: GenerationRequest, progress: Progress) -> Clip: ...


class NullProgress:
    """Progress that records nothing and is never cancelled: for library and CLI use."""

    cancelled = False

    def report(self, fraction: float, message: str | None = None) -> None:
        pass

    def log(self, message: str, level: str = "INFO") -> None:
        pass
