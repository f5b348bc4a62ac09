"""fal's input for an endpoint, built from ``stillreel run``'s flags (no typer, no I/O but reading files).

Each flag maps to the endpoint's own field name (``--tail-image`` is ``tail_image_url`` on v1 and
``end_image_url`` on o3). A flag the endpoint has no field for is an error: the server ignores unknown
fields, so it would otherwise be dropped without a word.
"""

from __future__ import annotations

import base64
import mimetypes
from pathlib import Path


class UsageError(Exception):
    """A command-line mistake (exit code 2)."""


def _is_url(value: str) -> bool:
    return value.split(":", 1)[0].lower() in ("http", "https", "data")


def file_value(value: str, option: str, *, inline: bool):
    """A URL passes through; a local path becomes a ``Path`` (uploaded by the client) or, with
    ``inline``, a data URI (for in-process runs)."""
    if _is_url(value):
        return value
    path = Path(value).expanduser()
    if not path.is_file():
        raise UsageError(f"{option}: no such file: {value}")
    if not inline:
        return path
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def parse_trajectory(text: str) -> list[dict]:
    points = []
    for pair in text.replace(";", " ").split():
        try:
            x, y = (float(v) for v in pair.split(","))
        except ValueError:
            raise UsageError(f'--trajectory wants "x1,y1 x2,y2 ...", got {text!r}') from None
        points.append({"x": x, "y": y})
    return points


def parse_shot(text: str) -> dict:
    prompt, sep, seconds = text.rpartition(":")
    if not sep or not prompt.strip() or not seconds.strip().isdigit():
        raise UsageError(f'--shot wants "prompt:seconds", got {text!r}')
    return {"prompt": prompt.strip(), "duration": seconds.strip()}


def endpoint_fields(endpoint_id: str) -> set[str] | None:
    from stillreel.endpoints.registry import find

    endpoint = find(endpoint_id)
    return set(endpoint.input_model.model_fields) if endpoint else None


def build_input(endpoint_id: str, *, image: str, prompt: str | None, tail_image: str | None,
                duration: str | None, aspect_ratio: str | None, camera: str | None, static_mask: str | None,
                dynamic_mask: list[str], trajectory: list[str], shot: list[str], negative_prompt: str | None,
                cfg_scale: float | None, audio: bool | None, inline: bool) -> dict:
    """fal's input for ``endpoint_id`` from the flags, using that endpoint's own field names.

    A flag the endpoint has no field for is an error here: the server would silently ignore it."""
    fields = endpoint_fields(endpoint_id)

    def name(option: str, *candidates: str) -> str:
        if fields is None:
            return candidates[0]
        for candidate in candidates:
            if candidate in fields:
                return candidate
        raise UsageError(f"{endpoint_id} has no {option} (its fields: {', '.join(sorted(fields))})")

    data: dict = {name("--image", "image_url", "start_image_url"): file_value(image, "--image", inline=inline)}
    if shot and prompt:
        raise UsageError("give either --prompt or --shot, not both")
    if not shot and not prompt:
        raise UsageError("--prompt is required (or one --shot per shot)")
    if prompt:
        data[name("--prompt", "prompt")] = prompt
    if shot:
        shots = [parse_shot(s) for s in shot]
        data[name("--shot", "multi_prompt")] = shots
        duration = duration or str(sum(int(s["duration"]) for s in shots))
    if duration:
        data[name("--duration", "duration")] = duration
    if tail_image:
        data[name("--tail-image", "tail_image_url", "end_image_url")] = file_value(tail_image, "--tail-image", inline=inline)
    if aspect_ratio:
        data[name("--aspect-ratio", "aspect_ratio")] = aspect_ratio
    if camera:
        data[name("--camera", "camera_control")] = camera
    if static_mask:
        data[name("--static-mask", "static_mask_url")] = file_value(static_mask, "--static-mask", inline=inline)
    if len(dynamic_mask) != len(trajectory):
        raise UsageError(f"each --dynamic-mask needs its --trajectory (got {len(dynamic_mask)} masks, "
                               f"{len(trajectory)} trajectories)")
    if dynamic_mask:
        data[name("--dynamic-mask", "dynamic_masks")] = [
            {"mask_url": file_value(m, "--dynamic-mask", inline=inline), "trajectories": parse_trajectory(t)}
            for m, t in zip(dynamic_mask, trajectory, strict=True)
        ]
    if negative_prompt is not None:
        data[name("--negative-prompt", "negative_prompt")] = negative_prompt
    if cfg_scale is not None:
        data[name("--cfg-scale", "cfg_scale")] = cfg_scale
    if audio is not None:
        data[name("--audio", "generate_audio")] = audio
    return data
