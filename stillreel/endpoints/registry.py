"""Endpoints: id, schemas, price, and the seam from fal's fields to one plan and back.

Each endpoint is one declaration (``family.py``) on top of shared field groups (``kling.py``).
``Endpoint.plan`` turns a fal input into a ``Plan`` (``request_plan.py``), checking fal's
unpublished rules (``rules.py``); ``Endpoint.admit`` checks the bound engine's capabilities once, at
submit (``features.py``); ``Endpoint.fal_loc`` / ``Endpoint.detail`` report any ``EngineError``
under this endpoint's fal field names (``mapping.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pydantic import BaseModel, ValidationError

from stillreel.endpoints import features, kling, mapping, rules
from stillreel.endpoints.family import DECLARATIONS, Declaration
from stillreel.endpoints.price import Price
from stillreel.endpoints.request_plan import Plan, PlannedElement, PlannedMask, build
from stillreel.engines.base import Capabilities, EngineError
from stillreel.errors import InputError  # the endpoints' 422, re-exported: part of this module's interface

__all__ = ["ENDPOINTS", "Endpoint", "InputError", "Plan", "PlannedElement", "PlannedMask", "Price", "find"]


@dataclass(frozen=True)
class Endpoint:
    id: str
    title: str
    description: str
    input_model: type[BaseModel]
    price: Price
    category: str = "image-to-video"
    output_model: type[BaseModel] = kling.VideoOutput
    # normalized attribute → this endpoint's fal field (the data mapping; see mapping.py)
    fields: dict = field(default_factory=dict)

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
        """Validate fal's input and map it to a plan; raises ``InputError`` (fal's 422 detail)."""
        return self.plan_model(self.validate(payload))

    def plan_model(self, model: BaseModel) -> Plan:
        """``plan`` of an input already validated by ``validate``."""
        try:
            rules.check_input(model, self.fields)
            plan = build(model, self.id, self.fields)
            rules.check(plan, self.fields)
        except EngineError as exc:
            raise InputError(self.detail(exc)) from None
        return plan

    def admit(self, plan: Plan, caps: Capabilities, engine: str = "engine") -> Plan:
        """The plan the bound engine will run (unhonourable defaults dropped), or ``InputError``
        (422 ``feature_not_supported``) for what the caller asked for explicitly and it cannot do."""
        plan, refused = features.apply(plan, caps)
        if refused:
            raise InputError([self._refusal(f, engine) for f in refused])
        return plan

    def _refusal(self, feature: features.Feature, engine: str) -> dict:
        # An attribute this endpoint has no fal field for (text-to-video ids have no start image
        # field: the *absence* of an image is the feature) is located at the body, not at a name
        # the caller never saw; the message names the feature instead.
        name = self.fields.get(feature.attr)
        what = name or feature.capability.replace("_", "-")
        if feature.capability == "text_to_video":  # refused for what is missing, not for what is set
            what = "text-to-video" + (f" (a request without {name})" if name else "")
        return {"loc": self.fal_loc((feature.attr,)) if name else ["body"], "type": "feature_not_supported",
                "msg": f"{what} is not supported by the {engine} serving this endpoint",
                "ctx": {"feature": feature.capability, "engine": engine}}

    def fal_loc(self, loc: tuple) -> list:
        return mapping.fal_loc(loc, self.fields)

    def detail(self, exc: EngineError) -> list[dict] | str:
        """fal's ``detail`` for an error: a list of located items below 500, a string above."""
        if isinstance(exc, InputError):
            return exc.detail
        if exc.status >= 500:
            return exc.message
        item = {"loc": self.fal_loc(exc.loc), "msg": exc.message, "type": exc.error_type}
        if exc.ctx:
            item["ctx"] = exc.ctx
        return [item]


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


def pascal(endpoint_id: str) -> str:
    """``fal-ai/kling-video/v2.5-turbo/standard/image-to-video`` → ``KlingVideoV25TurboStandardImageToVideo``."""
    name = endpoint_id.split("/", 1)[1] if "/" in endpoint_id else endpoint_id
    return "".join(p[:1].upper() + p[1:] for p in re.split(r"[/\-.]", name) if p)


_KIND_WORDS = {"image-to-video": "image to video", "text-to-video": "text to video",
               "reference-to-video": "reference to video", "elements": "elements"}


def _title(decl: Declaration) -> str:
    """``v2.5-turbo/pro/image-to-video`` → ``Kling 2.5 Turbo Pro (image to video)``."""
    *where, kind = decl.path.split("/")
    version = where[0]
    if version.startswith("v"):
        number, _, extra = version[1:].partition("-")
        version = (number if "." in number else f"{number}.0") + (f" {extra.capitalize()}" if extra else "")
    else:
        version = version.upper()
    tiers = ["4K" if t == "4k" else t.capitalize() for t in where[1:]]
    return " ".join(["Kling", version, *tiers]) + f" ({_KIND_WORDS[kind]})"


def _endpoint(decl: Declaration) -> Endpoint:
    model = kling.build_input(f"{pascal(decl.id)}Input", decl.groups)
    return Endpoint(
        id=decl.id, title=_title(decl), description=decl.description or f"{_KIND_WORDS[decl.kind].capitalize()}.",
        input_model=model, price=decl.price, category=decl.kind, fields=mapping.fields_of(model.model_fields),
    )


ENDPOINTS: dict[str, Endpoint] = {d.id: _endpoint(d) for d in DECLARATIONS}


def find(endpoint_id: str) -> Endpoint | None:
    return ENDPOINTS.get(endpoint_id.strip("/"))
