"""The one place that knows fal's field names: fal field ↔ the normalized request's attribute.

Engines and input resolution locate errors by ``GenerationRequest`` attribute names, without a
``"body"`` prefix: ``("end_image",)``, ``("dynamic_masks", 2, "trajectory")``,
``("reference_images", 1)``, ``("elements", 0, "frontal")``. ``fal_loc`` turns such a loc into
fal's ``["body", <fal field>, ...]`` for the endpoint at hand (v1's ``tail_image_url``, o3's
``end_image_url``, v2.6's ``start_image_url`` …).
"""

from __future__ import annotations

from collections.abc import Iterable

# fal field name → normalized attribute. Within one endpoint each attribute has one fal name, so the
# per-endpoint mapping (``fields_of``) is this table restricted to the endpoint's own fields.
FAL_TO_ATTR: dict[str, str] = {
    "image_url": "start_image",
    "start_image_url": "start_image",
    "tail_image_url": "end_image",
    "end_image_url": "end_image",
    "image_urls": "reference_images",
    "input_image_urls": "reference_images",
    "elements": "elements",
    "voice_ids": "voices",
    "multi_prompt": "shots",
    "prompt": "prompt",
    "cfg_scale": "guidance",
    "generate_audio": "audio",
    "negative_prompt": "negative_prompt",
    "aspect_ratio": "aspect",
    "camera_control": "camera",
    "advanced_camera_control": "advanced_camera",
    "static_mask_url": "static_mask",
    "dynamic_masks": "dynamic_masks",
    "duration": "seconds",
    "shot_type": "shot_type",
}

# Nested names, by the normalized attribute of the list they sit in.
NESTED: dict[str, dict[str, str]] = {
    "elements": {
        "frontal_image_url": "frontal",
        "reference_image_urls": "references",
        "voice_id": "voice_id",
        "video_url": "video",
    },
    "dynamic_masks": {"mask_url": "mask", "trajectories": "trajectory"},
    "shots": {"prompt": "prompt", "duration": "seconds"},
}


def fields_of(fal_fields: Iterable[str]) -> dict[str, str]:
    """normalized attribute → fal field, for an endpoint whose input has ``fal_fields``."""
    out: dict[str, str] = {}
    for name in fal_fields:
        attr = FAL_TO_ATTR.get(name)
        if attr is not None:
            out.setdefault(attr, name)
    return out


def fal_loc(loc: Iterable, fields: dict[str, str]) -> list:
    """A normalized loc → fal's ``["body", field, ...]`` for an endpoint whose ``fields`` are
    ``fields_of(its input's fields)``."""
    parts = list(loc)
    if not parts:
        return ["body"]
    attr, rest = parts[0], parts[1:]
    name = fields.get(attr, attr)
    if attr == "shots" and "shots" not in fields and "prompt" in fields:
        name, rest = fields["prompt"], []  # one prompt stands for all the shots: no index into it
    if attr == "prompt" and "prompt" not in fields and "shots" in fields:
        name = fields["shots"]
    nested = NESTED.get(attr)
    if nested and len(rest) >= 2 and isinstance(rest[0], int):
        inverse = {v: k for k, v in nested.items()}
        rest = [rest[0], inverse.get(rest[1], rest[1]), *rest[2:]]
    return ["body", name, *rest]

