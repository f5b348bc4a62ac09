"""The motion engine: real image-to-video on any CPU, with every Kling control and no weights.

Not generative: it animates the input still with geometry (camera moves, moving masked regions)
and optical flow (morphing into an end image). See docs/motion-engine.md.

``capabilities(options)`` and ``create(options)`` are what ``stillreel.engines`` loads.
"""

from __future__ import annotations

from stillreel.engines.base import Capabilities
from stillreel.engines.motion.engine import CAPABILITIES, MotionEngine, create

__all__ = ["capabilities", "create", "MotionEngine", "CAPABILITIES"]


def capabilities(options: dict | None = None) -> Capabilities:
    return CAPABILITIES
