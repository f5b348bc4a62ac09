"""What one pipeline call gets and gives back, shared by the family drivers.

A driver module (wan, wan_t2v, vace, ltx, ltx2) offers:

- ``load(model, dtype) -> pipeline`` with the real ``from_pretrained``;
- ``denoisers(pipeline) -> list`` of its transformer(s), for the speed settings;
- ``run(pipeline, family, call, on_step_end) -> Output``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image as PILImage

from stillreel.engines.base import Audio

# diffusers' callback_on_step_end(pipeline, step_index, timestep, callback_kwargs) -> dict
StepCallback = Callable[[object, int, object, dict], dict]


@dataclass(frozen=True)
class Call:
    prompt: str
    negative_prompt: str
    image: PILImage.Image | None  # the first frame, already at (width, height); None: from text alone
    last_image: PILImage.Image | None  # the last frame, for families with end_frame
    width: int
    height: int
    frames: int
    fps: int
    steps: int
    cfg: float  # fal's cfg_scale 0..1; each driver maps it onto its guidance knobs
    seed: int
    references: tuple[PILImage.Image, ...] = ()  # subject/style references, for families that take them


@dataclass
class Output:
    frames: np.ndarray  # uint8 (frames, height, width, 3)
    audio: Audio | None = None


def generator(seed: int) -> torch.Generator:
    # A CPU generator gives the same noise on any device, so a seed means the same video everywhere.
    return torch.Generator("cpu").manual_seed(int(seed) & 0xFFFF_FFFF_FFFF)


def call_kwargs(call: Call, on_step_end: StepCallback, *, guided: bool, **extra) -> dict:
    """The arguments every family's pipeline call shares, plus ``extra`` (the family's own: its
    guidance knobs, images, conditions). The negative prompt is passed only when ``guided``."""
    return dict(
        prompt=call.prompt,
        negative_prompt=call.negative_prompt if guided else None,
        height=call.height,
        width=call.width,
        num_frames=call.frames,
        num_inference_steps=call.steps,
        generator=generator(call.seed),
        output_type="pt",
        callback_on_step_end=on_step_end,
        **extra,
    )


def video_to_uint8(video: torch.Tensor) -> np.ndarray:
    """A pipeline's ``output_type="pt"`` video (frames, 3, h, w) in 0..1 → uint8 (frames, h, w, 3).

    Converting on the device before the copy moves a quarter of the bytes a float array would.
    """
    video = (video.float() * 255.0).round_().clamp_(0, 255).to(torch.uint8)
    return video.permute(0, 2, 3, 1).contiguous().cpu().numpy()
