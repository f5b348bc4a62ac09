"""Endpoint declarations: id, schemas, price, and the mapping from fal's fields to one plan.

Each endpoint is data. ``Endpoint.plan`` turns a validated input into a ``Plan``: the normalized,
JSON-serializable request that is queued (image URLs not yet fetched). The worker later resolves a
plan's URLs into a ``GenerationRequest`` (``stillreel.media.inputs.resolve``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from pydantic import BaseModel, ValidationError

from stillreel.endpoints import kling
from stillreel.engines.base import Capabilities


class InputError(Exception):
    """An invalid input, reported as fal's 422 ``{"detail": [...]}``."""

    def __init__(self, detail: list[dict]):
        super().__init__(detail[0]["msg"] if detail else "invalid input")
        self.detail = detail

    @classmethod
    def one(cls, loc: tuple, msg: str, type: str = "value_error", **ctx) -> InputError:
        item = {"loc": ["body", *loc], "msg": msg, "type": type}
        if ctx:
            item["ctx"] = ctx
        return cls([item])


@dataclass(frozen=True)
class PlannedMask:
    mask_url: str
    trajectory: tuple[tuple[float, float], ...]  # Kling's coordinates: input pixels, origin bottom-left


@dataclass(frozen=True)
class Plan:
    """A request in engine terms, before its files are fetched. Round-trips through JSON."""

    image_url: str
    shots: tuple[tuple[str, int], ...]
    seconds: int
    guidance: float = 0.5
    negative_prompt: str | None = None
    end_image_url: str | None = None
    aspect: str | None = None
    camera: str | None = None
    static_mask_url: str | None = None
    dynamic_masks: tuple[PlannedMask, ...] = ()
    audio: bool = False
    seed: int = 0
    # fal field names of the inputs, so that errors found later can point at the right field.
    fields: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Plan:
        data = dict(data)
        data["shots"] = tuple((p, int(s)) for p, s in data["shots"])
        data["dynamic_masks"] = tuple(
            PlannedMask(m["mask_url"], tuple((float(x), float(y)) for x, y in m["trajectory"]))
            for m in data.get("dynamic_masks", ())
        )
        return cls(**data)

    def unsupported(self, caps: Capabilities) -> list[tuple[str, str]]:
        """(fal field, feature) pairs this plan uses that ``caps`` does not honour."""
        f = self.fields
        used = [
            ("end_frame", self.end_image_url is not None, f.get("end_image", "end_image_url")),
            ("motion_brush", self.static_mask_url is not None, "static_mask_url"),
            ("motion_brush", bool(self.dynamic_masks), "dynamic_masks"),
            ("camera", self.camera is not None, "camera_control"),
            ("multi_shot", len(self.shots) > 1, "multi_prompt"),
            ("audio", self.audio, "generate_audio"),
            ("aspect_ratio", self.aspect is not None and "aspect_ratio" in f, "aspect_ratio"),
        ]
        return [(name, feat) for feat, on, name in used if on and not getattr(caps, feat)]


@dataclass(frozen=True)
class Price:
    """What fal charges for the endpoint (stillreel itself bills nothing; shown for comparison)."""

    per_second: float | None = None
    first_5s: float | None = None  # a 5 s clip; extra seconds at per_second
    audio_per_second: float | None = None

    def for_clip(self, seconds: int, audio: bool = False) -> float | None:
        if self.first_5s is not None:
            return round(self.first_5s + max(0, seconds - 5) * (self.per_second or 0), 4)
        rate = self.audio_per_second if audio and self.audio_per_second else self.per_second
        return None if rate is None else round(rate * seconds, 4)

    def describe(self) -> str:
        if self.first_5s is not None:
            return f"${self.first_5s:.2f} per 5 s clip, ${self.per_second:.3f} per extra second"
        if self.per_second is None:
            return "not published by fal"
        text = f"${self.per_second:.3f} per second"
        if self.audio_per_second:
            text += f" (${self.audio_per_second:.3f} with audio)"
        return text


@dataclass(frozen=True)
class Endpoint:
    id: str
    title: str
    description: str
    input_model: type[BaseModel]
    to_plan: Callable[[BaseModel], Plan]
    price: Price
    output_model: type[BaseModel] = kling.VideoOutput
    category: str = "image-to-video"

    @property
    def app(self) -> str:
        """fal's ``owner/alias``: status, result and cancel live under it."""
        return "/".join(self.id.split("/")[:2])

    def validate(self, payload: object) -> BaseModel:
        if not isinstance(payload, dict):
            raise InputError.one((), "the request body must be a JSON object", "model_attributes_type")
        try:
            return self.input_model.model_validate(payload)
        except ValidationError as exc:
            raise InputError(validation_detail(exc)) from None

    def plan(self, payload: object) -> Plan:
        """Validate fal's input and map it to a plan; raises ``InputError``."""
        return self.to_plan(self.validate(payload))


def validation_detail(exc: ValidationError) -> list[dict]:
    detail = []
    for err in exc.errors(include_url=False):
        item = {"loc": ["body", *err["loc"]], "msg": err["msg"], "type": err["type"]}
        if "ctx" in err:
            item["ctx"] = {k: v if isinstance(v, (str, int, float, bool)) else str(v) for k, v in err["ctx"].items()}
        if "input" in err and isinstance(err["input"], (str, int, float, bool, type(None))):
            item["input"] = err["input"]
        detail.append(item)
    return detail


def _seed(model: BaseModel) -> int:
    # Kling's endpoints take no seed; the same input must give the same video, so derive one.
    blob = json.dumps(model.model_dump(mode="json"), sort_keys=True).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:4], "big")


def _brush(model: kling.KlingV1StandardInput) -> tuple[PlannedMask, ...]:
    masks = model.dynamic_masks or []
    if len(masks) > kling.MAX_DYNAMIC_MASKS:
        raise InputError.one(
            ("dynamic_masks",),
            f"at most {kling.MAX_DYNAMIC_MASKS} dynamic masks are supported, got {len(masks)}",
            "too_long",
        )
    lo, hi = kling.TRAJECTORY_POINTS
    planned = []
    for i, mask in enumerate(masks):
        points = mask.trajectories or []
        if not lo <= len(points) <= hi:
            raise InputError.one(
                ("dynamic_masks", i, "trajectories"),
                f"a dynamic mask needs a trajectory of {lo} to {hi} points (input-image pixels, "
                f"origin bottom-left), got {len(points)}",
                "trajectory_length",
            )
        planned.append(PlannedMask(mask.mask_url, tuple((p.x, p.y) for p in points)))
    return tuple(planned)


def _plan_v1_standard(m: kling.KlingV1StandardInput) -> Plan:
    return Plan(
        image_url=m.image_url,
        shots=((m.prompt, int(m.duration)),),
        seconds=int(m.duration),
        guidance=m.cfg_scale,
        negative_prompt=m.negative_prompt,
        end_image_url=m.tail_image_url,
        aspect=m.aspect_ratio,
        camera=m.camera_control,
        static_mask_url=m.static_mask_url,
        dynamic_masks=_brush(m),
        seed=_seed(m),
        fields={"end_image": "tail_image_url", "aspect_ratio": True},
    )


def _plan_v1_pro(m: kling.KlingV1ProInput) -> Plan:
    return Plan(
        image_url=m.image_url,
        shots=((m.prompt, int(m.duration)),),
        seconds=int(m.duration),
        aspect=m.aspect_ratio,
        seed=_seed(m),
        fields={"aspect_ratio": True},
    )


def _plan_v2(m: kling.KlingV2MasterInput) -> Plan:
    return Plan(
        image_url=m.image_url,
        shots=((m.prompt, int(m.duration)),),
        seconds=int(m.duration),
        guidance=m.cfg_scale,
        negative_prompt=m.negative_prompt,
        seed=_seed(m),
    )


def _plan_o3(m: kling.KlingO3StandardInput) -> Plan:
    seconds = int(m.duration)
    if (m.prompt is None) == (m.multi_prompt is None):
        raise InputError.one(
            ("prompt",), "exactly one of prompt or multi_prompt must be provided", "one_of"
        )
    if m.multi_prompt is not None:
        if not m.multi_prompt:
            raise InputError.one(("multi_prompt",), "multi_prompt needs at least one shot", "too_short")
        shots = tuple((s.prompt, int(s.duration)) for s in m.multi_prompt)
        total = sum(s for _, s in shots)
        if total != seconds:
            raise InputError.one(
                ("multi_prompt",),
                f"the multi_prompt shot durations add up to {total} s but duration is {seconds} s; "
                "they must be equal",
                "shot_durations",
                total=total,
                duration=seconds,
            )
    else:
        shots = ((m.prompt, seconds),)
    return Plan(
        image_url=m.image_url,
        shots=shots,
        seconds=seconds,
        end_image_url=m.end_image_url,
        audio=m.generate_audio,
        seed=_seed(m),
        fields={"end_image": "end_image_url"},
    )


ENDPOINTS: dict[str, Endpoint] = {
    e.id: e
    for e in [
        Endpoint(
            id="fal-ai/kling-video/v1/standard/image-to-video",
            title="Kling 1.0 Standard (image to video)",
            description="Image to video with motion brush (static and dynamic masks), tail image and camera presets.",
            input_model=kling.KlingV1StandardInput,
            to_plan=_plan_v1_standard,
            price=Price(per_second=0.045),
        ),
        Endpoint(
            id="fal-ai/kling-video/v1/pro/image-to-video",
            title="Kling 1.0 Pro (image to video)",
            description="Image to video with a chosen aspect ratio.",
            input_model=kling.KlingV1ProInput,
            to_plan=_plan_v1_pro,
            price=Price(),
        ),
        Endpoint(
            id="fal-ai/kling-video/v2/master/image-to-video",
            title="Kling 2.0 Master (image to video)",
            description="Image to video with negative prompt and CFG scale.",
            input_model=kling.KlingV2MasterInput,
            to_plan=_plan_v2,
            price=Price(first_5s=1.40, per_second=0.28),
        ),
        Endpoint(
            id="fal-ai/kling-video/v2.5-turbo/standard/image-to-video",
            title="Kling 2.5 Turbo Standard (image to video)",
            description="Image to video with negative prompt and CFG scale, tuned for speed.",
            input_model=kling.KlingV25TurboStandardInput,
            to_plan=_plan_v2,
            price=Price(first_5s=0.21, per_second=0.042),
        ),
        Endpoint(
            id="fal-ai/kling-video/o3/standard/image-to-video",
            title="Kling O3 Standard (image to video)",
            description="Image to video, 3-15 s, end frame, multi-shot prompts and an audio flag.",
            input_model=kling.KlingO3StandardInput,
            to_plan=_plan_o3,
            price=Price(per_second=0.084, audio_per_second=0.112),
        ),
    ]
}


def find(endpoint_id: str) -> Endpoint | None:
    return ENDPOINTS.get(endpoint_id.strip("/"))
