"""The queued request: a validated fal input in normalized terms, before its files are fetched.

``build`` maps an endpoint's validated pydantic input onto a ``Plan`` through the endpoint's field
mapping (``mapping.fields_of``): attribute names are the ``GenerationRequest``'s (``start_image_url``
is the URL of ``start_image``, ``reference_image_urls`` of ``reference_images`` …). A plan is
JSON-serializable (the queue stores it) and ``stillreel.media.resolve.resolve`` turns it into a
``GenerationRequest`` in the worker.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from dataclasses import fields as dataclass_fields

from pydantic import BaseModel

from stillreel.engines.base import Tier


@dataclass(frozen=True)
class PlannedMask:
    mask_url: str
    # Kling's coordinates as given: input-image pixels, origin bottom-left (resolve converts them).
    trajectory: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class PlannedElement:
    frontal_url: str | None
    reference_urls: tuple[str, ...] = ()
    voice_id: str | None = None
    video_url: str | None = None


@dataclass(frozen=True)
class Plan:
    """A request in engine terms, before its files are fetched. Round-trips through JSON."""

    start_image_url: str | None
    shots: tuple[tuple[str, int], ...]
    seconds: int
    guidance: float = 0.5
    negative_prompt: str | None = None
    end_image_url: str | None = None
    aspect: str | None = None
    camera: str | None = None
    advanced_camera: tuple[str, float] | None = None
    static_mask_url: str | None = None
    dynamic_masks: tuple[PlannedMask, ...] = ()
    audio: bool = False
    seed: int = 0
    tier: str = Tier.STANDARD.value
    shot_type: str = "customize"
    reference_image_urls: tuple[str, ...] = ()
    elements: tuple[PlannedElement, ...] = ()
    voices: tuple[str, ...] = ()
    endpoint_id: str = ""  # whose fal field names errors found later are reported under
    explicit: tuple[str, ...] = ()  # normalized attributes the caller set (the rest are defaults)
    dropped: tuple[str, ...] = ()  # defaults the bound engine cannot honour, dropped at submit

    def to_json(self) -> dict:
        # ``asdict`` deep-copied every tuple (9 % of a submit's CPU); the fields are immutable,
        # so only the nested dataclasses need converting.
        data = {f.name: getattr(self, f.name) for f in dataclass_fields(self)}
        data["dynamic_masks"] = tuple(asdict(m) for m in self.dynamic_masks)
        data["elements"] = tuple(asdict(e) for e in self.elements)
        return data

    @classmethod
    def from_json(cls, data: dict) -> Plan:
        data = dict(data)
        data["shots"] = tuple((p, int(s)) for p, s in data["shots"])
        data["dynamic_masks"] = tuple(
            PlannedMask(m["mask_url"], tuple((float(x), float(y)) for x, y in m["trajectory"]))
            for m in data.get("dynamic_masks", ())
        )
        data["elements"] = tuple(
            PlannedElement(e.get("frontal_url"), tuple(e.get("reference_urls") or ()), e.get("voice_id"),
                           e.get("video_url"))
            for e in data.get("elements", ())
        )
        if data.get("advanced_camera") is not None:
            kind, value = data["advanced_camera"]
            data["advanced_camera"] = (kind, float(value))
        for key in ("reference_image_urls", "voices", "explicit", "dropped"):
            data[key] = tuple(data.get(key) or ())
        return cls(**data)


def tier_of(endpoint_id: str) -> Tier:
    parts = endpoint_id.split("/")
    if "4k" in parts:
        return Tier.UHD
    if "standard" in parts:
        return Tier.STANDARD
    return Tier.PRO  # pro, master, and o1's untiered ids


def seed_of(model: BaseModel) -> int:
    # Kling's endpoints take no seed; the same input must give the same video, so derive one.
    blob = json.dumps(model.model_dump(mode="json"), sort_keys=True).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:4], "big")


def build(model: BaseModel, endpoint_id: str, fields: dict[str, str]) -> Plan:
    """Map a validated input onto a plan. ``fields``: normalized attribute → this endpoint's fal field."""

    def get(attr: str, default=None):
        name = fields.get(attr)
        value = getattr(model, name) if name else None
        return default if value is None else value

    seconds = int(get("seconds", 5))
    multi = get("shots")
    if multi is not None:
        shots = tuple((s.prompt, int(s.duration)) for s in multi)
    else:
        shots = ((get("prompt", ""), seconds),)
    masks = tuple(
        PlannedMask(m.mask_url, tuple((p.x, p.y) for p in (m.trajectories or [])))
        for m in get("dynamic_masks", [])
    )
    elements = tuple(
        PlannedElement(getattr(e, "frontal_image_url", None), tuple(e.reference_image_urls or ()),
                       getattr(e, "voice_id", None), getattr(e, "video_url", None))
        for e in get("elements", [])
    )
    advanced = get("advanced_camera")
    set_names = model.model_fields_set
    return Plan(
        start_image_url=get("start_image"),
        shots=shots,
        seconds=seconds,
        guidance=float(get("guidance", 0.5)),
        negative_prompt=get("negative_prompt"),
        end_image_url=get("end_image"),
        aspect=get("aspect"),
        camera=get("camera"),
        advanced_camera=(advanced.movement_type, float(advanced.movement_value)) if advanced else None,
        static_mask_url=get("static_mask"),
        dynamic_masks=masks,
        audio=bool(get("audio", False)),
        seed=seed_of(model),
        tier=tier_of(endpoint_id).value,
        shot_type=get("shot_type", "customize"),
        reference_image_urls=tuple(get("reference_images", ())),
        elements=elements,
        voices=tuple(get("voices", ())),
        endpoint_id=endpoint_id,
        explicit=tuple(attr for attr, name in fields.items() if name in set_names),
    )
