"""From a ``GenerationRequest`` to a render plan, refusing up front what cannot work.

Everything here is cheap (sizes, checks, small mask resamples); the expensive preparation (hole
fill, optical flow) happens on the render thread. Errors are ``EngineError`` 422s whose ``loc``
names the normalized request's attribute without a ``"body"`` prefix (``("end_image",)``,
``("dynamic_masks", 2, "trajectory")``); the endpoint layer translates it to fal's field once.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace

import numpy as np

from stillreel.engines.base import Aspect, Audio, Shot, ShotType, Tier, CameraPreset, DynamicMask, EngineError, GenerationRequest
from stillreel.engines.motion.camera import Move, PRESETS, PUSH_IN, STILL, move_from_prompt, strength
from stillreel.engines.motion.shots import DEFAULT_CYCLE, FRAMINGS, focus_points, framed_still, framing_from_prompt, split_prompt
from stillreel.engines.motion.geometry import FPS, Cover, nearest_aspect, output_size
from stillreel.engines.motion.morph import Morph
from stillreel.engines.motion.scene import BrushStroke, Renderer, Scene, Sequence
from stillreel.engines.motion.sound import eased_speed, soundtrack

ENGINE = "motion"
MAX_SECONDS = 60
# A cover-crop keeping less than this share of an image, or fewer pixels than this on a side,
# would animate a sliver of it: refuse instead.
MIN_KEPT_FRACTION = 0.2
MIN_KEPT_SIDE = 16
# A dynamic mask covering more of the frame than this leaves no background to move it over.
MAX_DYNAMIC_COVERAGE = 0.9


@dataclass
class RenderPlan:
    width: int
    height: int
    fps: int
    renderer: Renderer
    notes: list[str] = field(default_factory=list)  # log lines: what the engine does and ignores
    info: dict = field(default_factory=dict)
    audio: Audio | None = None

    @property
    def frames(self) -> int:
        return self.renderer.frames


def _fail(message: str, loc: tuple, error_type: str = "value_error") -> EngineError:
    return EngineError(message, error_type=error_type, loc=tuple(loc))


def _check_image(img, loc: tuple, what: str) -> None:
    if not (isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3):
        raise _fail(f"the {what} must be an RGB image", loc, "image_load_error")


def _cover(img: np.ndarray, width: int, height: int, aspect_label: str, loc: tuple, what: str) -> Cover:
    h, w = img.shape[:2]
    cover = Cover.fit(w, h, width, height)
    kw, kh = cover.kept_size
    if cover.kept_fraction < MIN_KEPT_FRACTION or min(kw, kh) < MIN_KEPT_SIDE:
        raise _fail(
            f"the {what} is {w}x{h}: cropping it to {aspect_label} would keep only a {kw:.0f}x{kh:.0f} "
            f"part ({cover.kept_fraction:.0%} of it); use an image of at least {MIN_KEPT_SIDE} px whose shape "
            f"is closer to {aspect_label}",
            loc,
        )
    return cover


def _check_shots(request: GenerationRequest) -> None:
    if not 1 <= request.seconds <= MAX_SECONDS:
        raise _fail(f"duration must be 1 to {MAX_SECONDS} s, got {request.seconds}", ("seconds",))
    if not request.shots:
        raise _fail("the request has no prompt", ("prompt",))
    if any(s.seconds < 1 for s in request.shots):
        raise _fail("every shot must last at least 1 s", ("shots",))
    total = sum(s.seconds for s in request.shots)
    if total != request.seconds:
        raise _fail(
            f"the shot durations add up to {total} s but duration is {request.seconds} s; they must be equal",
            ("shots",),
        )


def _check_combinations(request: GenerationRequest) -> None:
    # Kling itself does not combine an end image with masks or camera_control: the last frame
    # must be the end image, which a moving camera or a displaced region would contradict.
    has_masks = request.static_mask is not None or bool(request.dynamic_masks)
    mask_field = "dynamic_masks" if request.dynamic_masks else "static_mask"
    if request.end_image is not None and request.camera is not None:
        raise _fail("a camera preset cannot be combined with an end image: "
                    "the last frame must be the end image", ("camera",))
    if request.end_image is not None and has_masks:
        raise _fail("motion-brush masks cannot be combined with an end image",
                    (mask_field,))
    if has_masks and len(request.shots) > 1:
        raise _fail("motion-brush masks cannot be combined with multiple shots", (mask_field,))


def _mask(mask, image_hw: tuple[int, int], cover: Cover, loc: tuple, what: str) -> np.ndarray:
    if not (isinstance(mask, np.ndarray) and mask.ndim == 2 and mask.dtype == np.uint8):
        raise _fail(f"the {what} must be a single-channel 8-bit mask", loc, "image_load_error")
    h, w = image_hw
    if mask.shape != (h, w):
        raise _fail(f"the {what} is {mask.shape[1]}x{mask.shape[0]} but the image is {w}x{h}; "
                    "masks must have the image's size", loc)
    if not (mask > 127).any():
        raise _fail(f"the {what} selects nothing (no pixel above 127)", loc)
    out = cover.mask(mask)
    if not out.any():
        raise _fail(f"the {what} lies entirely in the part of the image cut away by the aspect-ratio crop", loc)
    return out


def _stroke(i: int, dm: DynamicMask, image_hw: tuple[int, int], cover: Cover) -> BrushStroke:
    loc = ("dynamic_masks", i)
    mask = _mask(dm.mask, image_hw, cover, (*loc, "mask"), f"dynamic mask {i}")
    if mask.mean() / 255 > MAX_DYNAMIC_COVERAGE:
        raise _fail(f"dynamic mask {i} covers {mask.mean() / 255:.0%} of the frame: there is no background "
                    "left to move it over", (*loc, "mask"))
    points = dm.trajectory
    if len(points) < 2:
        raise _fail(f"dynamic mask {i} needs a trajectory of at least 2 points, got {len(points)}",
                    (*loc, "trajectory"))
    h, w = image_hw
    for j, (x, y) in enumerate(points):
        if not (math.isfinite(x) and math.isfinite(y) and -1 <= x <= w and -1 <= y <= h):
            raise _fail(f"trajectory point {j} of dynamic mask {i} lies outside the {w}x{h} input image "
                        "(points are input-image pixels, top-left origin)", (*loc, "trajectory", j))
    return BrushStroke(mask, tuple(cover.point(x, y) for x, y in points))


def _camera_for(request: GenerationRequest, prompt: str, strength: float, still_by_default: bool) -> Move:
    if request.camera is not None:
        move = PRESETS[CameraPreset(request.camera)]
    elif still_by_default:
        return STILL
    else:
        move = move_from_prompt(prompt) or PUSH_IN
    return STILL if move.is_still else move.scaled(strength)


def build_plan(request: GenerationRequest, size_scale: float = 1.0) -> RenderPlan:
    """Validate ``request`` and decide every shot; raises ``EngineError``."""
    _check_image(request.start_image, ("start_image",), "start image")
    if request.end_image is not None:
        _check_image(request.end_image, ("end_image",), "end image")
    _check_shots(request)
    split_note = None
    if ShotType(request.shot_type) is ShotType.INTELLIGENT and len(request.shots) == 1:
        pieces = split_prompt(request.shots[0].prompt, request.seconds)
        request = replace(request, shots=tuple(Shot(text, sec) for text, sec in pieces))
        split_note = "shot_type intelligent: the prompt split into " + "; ".join(
            f"shot {k + 1} ({sec} s): {text!r}" for k, (text, sec) in enumerate(pieces))
    _check_combinations(request)

    image = request.start_image
    h, w = image.shape[:2]
    aspect = Aspect(request.aspect) if request.aspect else nearest_aspect(w, h)
    W, H = output_size(aspect, size_scale, request.tier)
    label = aspect.value
    cover = _cover(image, W, H, label, ("aspect",) if request.aspect else ("start_image",), "input image")
    end_cover = None
    if request.end_image is not None:
        end_cover = _cover(request.end_image, W, H, label, ("end_image",), "end image")

    static = None
    if request.static_mask is not None:
        static = _mask(request.static_mask, (h, w), cover, ("static_mask",), "static mask")
    strokes = tuple(_stroke(i, dm, (h, w), cover) for i, dm in enumerate(request.dynamic_masks))

    power = strength(request.guidance)
    notes = [
        f"{ENGINE} engine: animates the still with geometry and optical flow; it is not generative and "
        "invents no new content",
        f"output {W}x{H} ({label}), {request.seconds} s at {FPS} fps; cover-crop keeps "
        f"{cover.kept_fraction:.0%} of the {w}x{h} input",
    ]
    if split_note:
        notes.append(split_note)
    if request.negative_prompt:
        notes.append("negative_prompt is ignored (nothing is generated)")
    if request.camera is None and (strokes or static is not None):
        notes.append("camera stays still (motion-brush masks and no camera preset)")

    parts: list[Renderer] = []
    activity: list[np.ndarray] = []  # per frame, 0..1: drives the soundtrack
    # With masks (and no camera_control) the camera stays still: a static region must stay put.
    # The shot that morphs into an end image has no camera at all: it must land on that image.
    still_by_default = bool(strokes) or static is not None
    n_shots = len(request.shots)
    focus = None
    for k, shot in enumerate(request.shots):
        frames = shot.seconds * FPS
        last = k == n_shots - 1
        if last and request.end_image is not None:
            end = request.end_image
            parts.append(Morph(lambda: cover.image(image), lambda end=end: end_cover.image(end), frames))
            activity.append(_with_cut(0.8 * eased_speed(frames), k))
            notes.append(f"{'shot ' + str(k + 1) + ': ' if n_shots > 1 else ''}camera still; morphs into the "
                         "end image along optical flow")
            continue
        share = 1.0
        if k > 0:
            name = framing_from_prompt(shot.prompt) or DEFAULT_CYCLE[(k - 1) % len(DEFAULT_CYCLE)]
            share = FRAMINGS[name]
        if share < 1.0 and focus is None:
            focus = focus_points(cover.image(image))
        where = focus[(k - 1) % len(focus)] if share < 1.0 else (W / 2, H / 2)
        move = _camera_for(request, shot.prompt, power, still_by_default)
        parts.append(Scene(framed_still(image, cover, share, where), frames, move, strokes, static))
        activity.append(_with_cut(_move_amount(move, bool(strokes)) * eased_speed(frames), k))
        framing = "" if n_shots == 1 else f"{'wide' if share == 1 else 'medium' if share > 0.6 else 'close'} framing, "
        notes.append(f"{'shot ' + str(k + 1) + ': ' if n_shots > 1 else ''}{framing}camera: {move.name}"
                     f"{'' if move.is_still else f' (strength {power:.2f} from guidance {request.guidance:g})'}")

    renderer = Sequence(parts)
    info = {"engine": ENGINE, "generative": False, "width": W, "height": H, "fps": FPS,
            "frames": renderer.frames, "aspect_ratio": label, "tier": Tier(request.tier).value}
    audio = None
    if request.audio:
        audio = soundtrack(np.concatenate(activity), FPS, request.seed)
        notes.append("audio: a procedural ambience (seeded noise and a soft drone whose loudness and brightness "
                     "follow the motion), not generated from the prompt; nothing is spoken")
        info["audio"] = "procedural ambience (not generative)"
    if request.voices:
        tokens = sorted(set(re.findall(r"<<<voice_\d+>>>", request.prompt)))
        notes.append(f"voices {', '.join(request.voices)} noted"
                     f"{' (prompt uses ' + ', '.join(tokens) + ')' if tokens else ''}; no speech is synthesised")
    return RenderPlan(W, H, FPS, renderer, notes, info, audio)


def _move_amount(move: Move, brush: bool) -> float:
    """How much a shot moves, 0..1, for the soundtrack's loudness."""
    if move.is_still:
        return 0.6 if brush else 0.0
    z = abs(np.log(move.zoom[1] / move.zoom[0])) * 4
    turn = sum(abs(b - a) for a, b in (move.yaw, move.pitch, move.roll)) / 10
    slide = sum(abs(b - a) for a, b in (move.tx, move.ty)) * 4
    return float(min(1.0, z + turn + slide))


def _with_cut(curve: np.ndarray, shot: int) -> np.ndarray:
    """A short burst at the start of every shot after the first: the hard cut is heard."""
    if shot > 0:
        n = min(len(curve), 8)
        curve = curve.copy()
        curve[:n] = np.maximum(curve[:n], np.exp(-np.arange(n) / 2.5))
    return curve
