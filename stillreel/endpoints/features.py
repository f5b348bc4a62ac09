"""The one table of engine features a request can use, checked once, at submit.

A feature the caller set **explicitly** that the bound engine cannot do is refused (422
``feature_not_supported``). A **default** it cannot honour (``generate_audio`` defaulting to true
on v2.6+, ``shot_type`` …) is dropped: the request runs without it and ``Plan.dropped`` (then the
logs and the result's info) say so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from stillreel.endpoints.request_plan import Plan
from stillreel.engines.base import Capabilities


@dataclass(frozen=True)
class Feature:
    capability: str  # the Capabilities flag
    attr: str  # the normalized attribute that uses it (errors are located there)
    used: Callable[[Plan], bool]
    off: dict | None = None  # how to drop it when only a default asked for it (None: never dropped)


FEATURES: tuple[Feature, ...] = (
    Feature("text_to_video", "start_image", lambda p: p.start_image_url is None),
    Feature("image_to_video", "start_image", lambda p: p.start_image_url is not None),
    Feature("end_frame", "end_image", lambda p: p.end_image_url is not None),
    Feature("motion_brush", "static_mask", lambda p: p.static_mask_url is not None),
    Feature("motion_brush", "dynamic_masks", lambda p: bool(p.dynamic_masks)),
    Feature("camera", "camera", lambda p: p.camera is not None),
    Feature("advanced_camera", "advanced_camera", lambda p: p.advanced_camera is not None),
    Feature("multi_shot", "shots", lambda p: len(p.shots) > 1),
    Feature("intelligent_shots", "shot_type", lambda p: p.shot_type == "intelligent", {"shot_type": "customize"}),
    Feature("audio", "audio", lambda p: p.audio, {"audio": False}),
    Feature("aspect_ratio", "aspect", lambda p: p.aspect is not None, {"aspect": None}),
    Feature("reference_images", "reference_images", lambda p: bool(p.reference_image_urls)),
    Feature("elements", "elements", lambda p: bool(p.elements)),
    Feature("element_video", "elements", lambda p: any(e.video_url for e in p.elements)),
    Feature("voices", "voices", lambda p: bool(p.voices) or any(e.voice_id for e in p.elements)),
)


def apply(plan: Plan, caps: Capabilities) -> tuple[Plan, list[Feature]]:
    """(the plan with unhonourable defaults dropped, the explicit features ``caps`` refuses)."""
    refused: list[Feature] = []
    dropped: list[str] = []
    for feature in FEATURES:
        if getattr(caps, feature.capability) or not feature.used(plan):
            continue
        if feature.off is not None and feature.attr not in plan.explicit:
            plan = replace(plan, **feature.off)
            dropped.append(feature.attr)
        else:
            refused.append(feature)
    if dropped:
        plan = replace(plan, dropped=tuple(dict.fromkeys((*plan.dropped, *dropped))))
    return plan, refused
