"""Checks fal applies that its JSON schemas do not publish, each in one place.

Every check raises ``EngineError`` located by the normalized request's attribute names; the
endpoint translates the loc into its own fal field names (``mapping.fal_loc``). ``check`` runs at
submit; ``check_trajectory`` needs the start image's pixel size, so ``media.resolve`` runs it once
the image is decoded.
"""

from __future__ import annotations

import re

from pydantic import BaseModel

from stillreel.endpoints.request_plan import Plan
from stillreel.engines.base import EngineError

MAX_DYNAMIC_MASKS = 6
TRAJECTORY_POINTS = (2, 77)  # points per dynamic mask's trajectory
MAX_SHOTS = 6  # fal's multi-shot storyboard: 1-6 shots
MAX_VOICES = 2  # voice_ids: <<<voice_1>>> and <<<voice_2>>>
MAX_IMAGES_TOTAL = 7  # elements + reference images + start image
MAX_IMAGES_WITH_VIDEO = 4  # elements + reference images when an element is a video
ELEMENT_REFERENCES = (1, 3)  # reference_image_urls per element
MAX_INPUT_IMAGES = 4  # v1.6 elements' input_image_urls
VOICE_TOKEN = re.compile(r"<<<voice_(\d+)>>>")


def _fail(loc: tuple, msg: str, type: str, **ctx) -> EngineError:
    return EngineError(msg, type, loc, ctx=ctx or None)


def check_input(model: BaseModel, fields: dict[str, str]) -> None:
    """One of prompt / multi_prompt where the endpoint takes both."""
    if "shots" not in fields or "prompt" not in fields:
        return
    prompt, multi = getattr(model, fields["prompt"]), getattr(model, fields["shots"])
    if (prompt is None) == (multi is None):
        raise _fail(("prompt",), "exactly one of prompt or multi_prompt must be provided", "one_of")


def check(plan: Plan, fields: dict[str, str]) -> None:
    """Every cross-field rule on a plan; ``fields`` says which fal fields the endpoint has."""
    _shots(plan, fields)
    _brush(plan)
    _voices(plan, fields)
    _images(plan, fields)


def _shots(plan: Plan, fields: dict[str, str]) -> None:
    if "shots" not in plan.explicit:  # one prompt: one shot of the whole duration
        return
    count = len(plan.shots)
    if not 1 <= count <= MAX_SHOTS:
        raise _fail(("shots",), f"multi_prompt needs 1 to {MAX_SHOTS} shots, got {count}",
                    "too_short" if count < 1 else "too_long")
    total = sum(s for _, s in plan.shots)
    if total != plan.seconds:
        raise _fail(("shots",), f"the multi_prompt shot durations add up to {total} s but duration is "
                    f"{plan.seconds} s; they must be equal", "shot_durations", total=total, duration=plan.seconds)


def _brush(plan: Plan) -> None:
    masks = plan.dynamic_masks
    if len(masks) > MAX_DYNAMIC_MASKS:
        raise _fail(("dynamic_masks",), f"at most {MAX_DYNAMIC_MASKS} dynamic masks are supported, got {len(masks)}",
                    "too_long")
    lo, hi = TRAJECTORY_POINTS
    for i, mask in enumerate(masks):
        if not lo <= len(mask.trajectory) <= hi:
            raise _fail(("dynamic_masks", i, "trajectory"),
                        f"a dynamic mask needs a trajectory of {lo} to {hi} points (input-image pixels, "
                        f"origin bottom-left), got {len(mask.trajectory)}", "trajectory_length")


def check_trajectory(points, size: tuple[int, int], mask_index: int) -> None:
    """Every point of dynamic mask ``mask_index``'s trajectory lies on the ``size`` (width, height)
    start image, edges included. Points are Kling's: input-image pixels, origin bottom-left."""
    width, height = size
    for j, (x, y) in enumerate(points):
        if not (0 <= x <= width and 0 <= y <= height):  # NaN and infinities fail too
            raise _fail(("dynamic_masks", mask_index, "trajectory", j),
                        f"dynamic_masks[{mask_index}]: trajectory point {j} ({x:g}, {y:g}) is outside the "
                        f"{width}×{height} start image (points are input-image pixels, origin at the bottom-left)",
                        "value_error")


def _voices(plan: Plan, fields: dict[str, str]) -> None:
    if "voices" not in fields:
        return
    if len(plan.voices) > MAX_VOICES:
        raise _fail(("voices",), f"at most {MAX_VOICES} voice ids per request, got {len(plan.voices)}",
                    "too_long", max_length=MAX_VOICES)
    for index, (prompt, _) in enumerate(plan.shots):
        for token in VOICE_TOKEN.finditer(prompt or ""):
            n = int(token.group(1))
            if not 1 <= n <= len(plan.voices):
                given = len(plan.voices)
                raise _fail(("shots", index, "prompt") if len(plan.shots) > 1 else ("prompt",),
                            f"{token.group(0)} refers to voice {n} but {given} voice id(s) were given "
                            "(voice_ids)", "voice_reference", voices=given)


def _images(plan: Plan, fields: dict[str, str]) -> None:
    refs, elements = plan.reference_image_urls, plan.elements
    if "reference_images" in fields and fields["reference_images"] == "input_image_urls":
        if not 1 <= len(refs) <= MAX_INPUT_IMAGES:
            raise _fail(("reference_images",), f"input_image_urls takes 1 to {MAX_INPUT_IMAGES} images, "
                        f"got {len(refs)}", "too_long" if refs else "too_short")
        return
    lo, hi = ELEMENT_REFERENCES
    videos = [i for i, e in enumerate(elements) if e.video_url]
    if len(videos) > 1:
        raise _fail(("elements", videos[1], "video"), "a request can only have one element with a video",
                    "too_many_videos")
    for i, element in enumerate(elements):
        if element.video_url:
            continue
        if element.frontal_url is None:
            raise _fail(("elements", i, "frontal"), "an element needs a frontal image (or a video)", "missing")
        if not lo <= len(element.reference_urls) <= hi:
            raise _fail(("elements", i, "references"), f"an element takes {lo} to {hi} reference images, "
                        f"got {len(element.reference_urls)}", "element_references")
    start = 1 if plan.start_image_url else 0
    total = len(elements) + len(refs) + start
    if videos and len(elements) + len(refs) > MAX_IMAGES_WITH_VIDEO:
        raise _fail(("elements",), f"at most {MAX_IMAGES_WITH_VIDEO} elements + reference images in total "
                    f"when an element is a video, got {len(elements) + len(refs)}", "too_many_images")
    if total > MAX_IMAGES_TOTAL:
        raise _fail(("reference_images",) if refs else ("elements",),
                    f"at most {MAX_IMAGES_TOTAL} images in total (elements + reference images + start image), "
                    f"got {total}", "too_many_images", total=total, limit=MAX_IMAGES_TOTAL)

