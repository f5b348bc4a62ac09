"""The diffusion engine's options: parsed and checked once, with errors that name the fix.

Options come from ``--model`` on the command line or from a ``stillreel.toml`` table
(``[engine]`` or ``[endpoints."<id>"]``); every key but ``name`` lands here. Only ``model`` is
required. A model folder may hold its own ``stillreel.toml`` with defaults for that checkpoint
(e.g. ``steps = 4`` and ``guidance = 1`` for a step-distilled one), so that ``--model PATH``
alone serves it right; options given by the server's config win over the folder's.
This module imports neither torch nor diffusers: the API process validates options without
loading any weights.
"""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any

# A diffusion engine option is missing, unknown or has a bad value (a ValueError too); defined
# with stillreel's other error types in stillreel.errors.
from stillreel.errors import OptionsError  # noqa: F401 (re-exported)

DTYPES = ("auto", "bfloat16", "float16", "float32")
DTYPE_ALIASES = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32", "float": "float32"}
OFFLOAD = ("none", "model", "sequential", "group")
# "auto" picks the fastest lossless backend installed (see speed.py); the rest are diffusers'
# AttentionBackendName values, checked against the installed diffusers when the model loads.
ATTENTION_AUTO = "auto"
CACHES = ("none", "first_block", "taylorseer", "pab", "mag")
FAMILIES = ("wan2.1-i2v", "wan2.1-flf2v", "wan2.2-i2v-a14b", "wan2.2-ti2v-5b", "wan2.1-t2v", "wan2.2-t2v-a14b",
            "wan-vace", "ltx-video", "ltx-2")

KNOWN = {
    "model": "path to a Diffusers-format folder, or a Hugging Face hub id",
    "family": f"model family when it cannot be read from the checkpoint: {', '.join(FAMILIES)}",
    "dtype": f"weights dtype: {', '.join(DTYPES)} (auto: bfloat16 on CUDA, float32 on CPU)",
    "device": "torch device, e.g. cuda, cuda:1, cpu (default: cuda when available)",
    "steps": "denoising steps per clip (default: the model card's)",
    "guidance": "the model's guidance scale that cfg_scale 0.5 maps to (default: the model card's)",
    "offload": f"CPU offload to fit smaller GPUs: {', '.join(OFFLOAD)}",
    "attention": "attention backend: auto, native, flash, _flash_3, sage, ... (diffusers' names)",
    "compile": "regional torch.compile of the transformer blocks: true/false (default: on CUDA without offload)",
    "cache": f"step caching (lossy, faster): {', '.join(CACHES)}, or a table {{type = ..., <config keys>}}",
    "vae_tiling": "decode the video in tiles to save memory: true/false/auto (auto: when offloading)",
    "fps": "output frame rate (default: the model's native rate)",
    "resolution": "landscape bucket as 'WIDTHxHEIGHT' or [width, height]; portrait swaps, square keeps the area",
    "max_seconds": "longest span made in one pipeline call; longer shots chain segments on their last frame",
}




@dataclass(frozen=True)
class CacheSpec:
    kind: str  # one of CACHES other than "none"
    params: dict = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class DiffusionOptions:
    model: str
    family: str | None = None
    dtype: str = "auto"
    device: str | None = None  # None: cuda when available, else cpu (decided when loading)
    steps: int | None = None
    guidance: float | None = None
    offload: str = "none"
    attention: str = ATTENTION_AUTO
    compile: bool | None = None  # None: on when the device is CUDA
    cache: CacheSpec | None = None
    vae_tiling: bool | None = None  # None: on when offloading
    fps: int | None = None
    resolution: tuple[int, int] | None = None  # landscape (width, height)
    max_seconds: int | None = None


MODEL_DEFAULTS = "stillreel.toml"  # optional, inside a model folder


def parse(options: dict[str, Any] | None) -> DiffusionOptions:
    """Check ``options`` and return them typed; raises ``OptionsError`` naming the bad key."""
    options = dict(options or {})
    _check_names(options, "")
    model = options.get("model")
    if not isinstance(model, str) or not model.strip():
        raise OptionsError(
            "diffusion engine: option 'model' is required: a Diffusers-format folder or hub id, "
            "e.g. stillreel serve --engine diffusion --model /models/Wan2.2-TI2V-5B-Diffusers"
        )
    options = {**model_defaults(model.strip()), **options}
    return DiffusionOptions(
        model=model.strip(),
        family=_choice(options, "family", FAMILIES, None),
        dtype=_dtype(options.get("dtype", "auto")),
        device=_optional_str(options, "device"),
        steps=_positive_int(options, "steps"),
        guidance=_guidance(options.get("guidance")),
        offload=_choice(options, "offload", OFFLOAD, "none"),
        attention=_attention(options.get("attention", ATTENTION_AUTO)),
        compile=_optional_bool(options, "compile"),
        cache=_cache(options.get("cache")),
        vae_tiling=_optional_bool(options, "vae_tiling"),
        fps=_positive_int(options, "fps"),
        resolution=_resolution(options.get("resolution")),
        max_seconds=_positive_int(options, "max_seconds"),
    )


def model_defaults(model: str) -> dict[str, Any]:
    """The options a model folder's own ``stillreel.toml`` sets (none for hub ids)."""
    path = Path(model) / MODEL_DEFAULTS
    if not path.is_file():
        return {}
    try:
        defaults = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise OptionsError(f"diffusion engine: cannot read {path}: {exc}") from None
    if "model" in defaults:
        raise OptionsError(f"diffusion engine: {path} may not set 'model': it belongs to that folder")
    _check_names(defaults, f" in {path}")
    return defaults


def _check_names(options: dict, where: str) -> None:
    unknown = [k for k in options if k not in KNOWN]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, KNOWN, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise OptionsError(
            f"diffusion engine: unknown option {', '.join(hints)}{where}; known options: {', '.join(KNOWN)}"
        )


def _fail(key: str, value: Any, expected: str) -> OptionsError:
    return OptionsError(f"diffusion engine: option {key!r} = {value!r} is invalid: {expected}")


def _choice(options: dict, key: str, allowed: tuple[str, ...], default: str | None) -> str | None:
    value = options.get(key, default)
    if value is None:
        return None
    if not isinstance(value, str) or value.lower() not in allowed:
        raise _fail(key, value, f"use one of {', '.join(allowed)}")
    return value.lower()


def _dtype(value: Any) -> str:
    name = DTYPE_ALIASES.get(str(value).lower(), str(value).lower())
    if name not in DTYPES:
        raise _fail("dtype", value, f"use one of {', '.join(DTYPES)}")
    return name


def _optional_str(options: dict, key: str) -> str | None:
    value = options.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _fail(key, value, "expected a non-empty string")
    return value.strip()


def _positive_int(options: dict, key: str) -> int | None:
    value = options.get(key)
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _fail(key, value, "expected a whole number ≥ 1")
    return value


def _guidance(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not 1.0 <= number <= 30.0:
        raise _fail("guidance", value, "expected a guidance scale between 1 (no guidance) and 30")
    return number


def _optional_bool(options: dict, key: str) -> bool | None:
    value = options.get(key)
    if value is None or (isinstance(value, str) and value.lower() == "auto"):
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "on", "off", "yes", "no", "1", "0"):
        return value.lower() in ("true", "on", "yes", "1")
    raise _fail(key, value, "expected true, false or auto")


def _attention(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail("attention", value, "expected a backend name such as auto, native, flash, _flash_3, sage")
    return value.strip().lower()


def _cache(value: Any) -> CacheSpec | None:
    if value is None or value is False:
        return None
    if isinstance(value, str):
        kind, params = value.lower(), {}
    elif isinstance(value, dict):
        params = dict(value)
        kind = str(params.pop("type", "")).lower()
    else:
        raise _fail("cache", value, f"expected one of {', '.join(CACHES)} or a table with a 'type' key")
    if kind not in CACHES:
        raise _fail("cache", value, f"use one of {', '.join(CACHES)}")
    if kind == "mag" and "mag_ratios" not in params:
        raise _fail(
            "cache", value, "the mag cache needs calibrated mag_ratios: cache = {type = 'mag', mag_ratios = [...]}"
        )
    return None if kind == "none" else CacheSpec(kind, params)


def _resolution(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    size: Any = value
    if isinstance(value, str):
        parts = value.lower().replace("×", "x").split("x")
        size = parts if len(parts) == 2 else None
    try:
        width, height = (int(v) for v in size)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        expected = "expected 'WIDTHxHEIGHT' (landscape, e.g. '832x480') or [width, height]"
        raise _fail("resolution", value, expected) from None
    if width < 16 or height < 16 or width < height:
        raise _fail("resolution", value, "give the landscape bucket: width ≥ height ≥ 16")
    return width, height
