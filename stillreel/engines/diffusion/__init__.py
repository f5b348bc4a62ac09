"""Diffusion engine: open image- and text-to-video models (Wan, Wan VACE, LTX-Video, LTX-2) through diffusers.

``capabilities(options)`` reads only the checkpoint's JSON metadata (no torch import, no weights),
so the API can refuse what the bound model cannot do at submit time. ``create(options)`` loads
the checkpoint with ``from_pretrained`` once, in the worker process that generates.

Options (all optional except ``model``) are listed in ``options.KNOWN``; see
docs/diffusion-engine.md for how to run with a downloaded checkpoint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stillreel.engines.base import Capabilities
from stillreel.engines.diffusion.families import Family, resolve
from stillreel.engines.diffusion.options import DiffusionOptions, OptionsError, parse

if TYPE_CHECKING:
    from stillreel.engines.diffusion.engine import DiffusionEngine

__all__ = ["capabilities", "create", "family", "DiffusionOptions", "OptionsError", "Family"]


def family(options: dict) -> Family:
    """The model family (and its effective defaults) that ``options`` bind to."""
    return resolve(parse(options))


def capabilities(options: dict) -> Capabilities:
    return family(options).capabilities()


def create(options: dict) -> DiffusionEngine:
    from stillreel.engines.diffusion.engine import DiffusionEngine  # imports torch + diffusers

    return DiffusionEngine.load(options)
