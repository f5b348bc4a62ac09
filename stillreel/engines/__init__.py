"""Engines by name: ``motion`` (CPU, no weights), ``diffusion`` (diffusers), or ``module:Class``.

An engine module offers ``capabilities(options) -> Capabilities`` (cheap: the API calls it to
refuse what the engine cannot do at submit time) and ``create(options) -> Engine`` (may load
weights; called once per worker, in the process that generates).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from stillreel.engines.base import Capabilities, Engine

BUILTIN = {
    "motion": "stillreel.engines.motion",
    "diffusion": "stillreel.engines.diffusion",
}


@dataclass(frozen=True)
class EngineSpec:
    name: str = "motion"
    options: dict = field(default_factory=dict, hash=False, compare=True)

    def to_json(self) -> dict:
        return {"name": self.name, "options": dict(self.options)}

    @classmethod
    def from_json(cls, data: dict) -> EngineSpec:
        return cls(data["name"], dict(data.get("options") or {}))


def _target(spec: EngineSpec):
    if spec.name in BUILTIN:
        return importlib.import_module(BUILTIN[spec.name])
    if ":" in spec.name:
        module, _, attr = spec.name.partition(":")
        return getattr(importlib.import_module(module), attr)
    raise ValueError(
        f"unknown engine {spec.name!r}: use one of {', '.join(BUILTIN)} or 'package.module:Class'"
    )


def capabilities(spec: EngineSpec) -> Capabilities:
    target = _target(spec)
    caps = getattr(target, "capabilities")
    return caps(spec.options) if callable(caps) else caps


def create(spec: EngineSpec) -> Engine:
    target = _target(spec)
    if hasattr(target, "create"):
        return target.create(spec.options)
    return target(**spec.options)
