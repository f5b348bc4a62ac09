"""From a ``GenerationRequest`` to a render plan, refusing up front what cannot work.

Everything here is cheap (sizes, checks, small mask resamples); the expensive preparation (hole
fill, optical flow) happens on the render thread. Errors are ``EngineError`` 422s whose ``loc``
names the normalized request's attribute without a ``"body"`` prefix (``("end_image",)``,
``("dynamic_masks", 2, "trajectory")``); the endpoint layer translates it to fal's field once.

The clip is made of stills (``stills.py``): the start image, else a procedural frame for
text-to-video, then the reference images and elements' pictures. The stills are spread over the
shots (hard cuts between shots); a shot with several stills cross-dissolves through them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import numpy as np

from stillreel.engines.base import (
    Aspect, Audio, BrushPath, CameraPreset, EngineError, GenerationRequest, Shot, ShotType, Tier,
)
from stillreel.engines.motion.camera import (
    ADVANCED_LIMIT, Move, PRESETS, PUSH_IN, STILL, advanced_move, move_from_prompt, strength,
)
from stillreel.engines.motion.shots import DEFAULT_CYCLE, FRAMINGS, framed_still, framing_from_prompt, split_prompt
from stillreel.engines.motion.geometry import FPS, Cover, nearest_aspect, output_size
from stillreel.engines.motion.morph import Morph
from stillreel.engines.motion.scene import BrushStroke, Dissolve, Renderer, Scene, Sequence
from stillreel.engines.motion.stills import (
    MIN_FRAMES_PER_STILL, Still, allot, dissolve_lengths, fit, given, procedural, references,
)
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
    # That the shots' durations add up to the duration is fal's rule, checked at submit
    # (endpoints.rules); a shot shorter than a second has no frame to cut to.
    if any(s.seconds < 1 for s in request.shots):
        raise _fail("every shot must last at least 1 s", ("shots",))


def _check_combinations(request: GenerationRequest) -> None:
    # Kling itself does not combine an end image with masks or camera_control: the last frame
    # must be the end image, which a moving camera or a displaced region would contradict.
    has_masks = request.static_mask is not None or bool(request.dynamic_masks)
    mask_field = "dynamic_masks" if request.dynamic_masks else "static_mask"
    if request.end_image is not None and request.camera is not None:
        raise _fail("a camera preset cannot be combined with an end image: "
                    "the last frame must be the end image", ("camera",))
    if request.end_image is not None and request.advanced_camera is not None:
        raise _fail("a camera movement cannot be combined with an end image: "
                    "the last frame must be the end image", ("advanced_camera",))
    if request.end_image is not None and has_masks:
        raise _fail("motion-brush masks cannot be combined with an end image",
                    (mask_field,))
    if has_masks and len(request.shots) > 1:
        raise _fail("motion-brush masks cannot be combined with multiple shots", (mask_field,))
    if has_masks and request.start_image is None:
        raise _fail("motion-brush masks need a start image (they are drawn on it)", (mask_field,))
    if has_masks and (request.reference_images or request.elements):
        # The masks select parts of the start image; the reference pictures that follow it have none.
        raise _fail("motion-brush masks cannot be combined with reference images or elements", (mask_field,))


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


def _stroke(i: int, dm: BrushPath, image_hw: tuple[int, int], cover: Cover) -> BrushStroke:
    loc = ("dynamic_masks", i)
    mask = _mask(dm.mask, image_hw, cover, (*loc, "mask"), f"dynamic mask {i}")
    if mask.mean() / 255 > MAX_DYNAMIC_COVERAGE:
        raise _fail(f"dynamic mask {i} covers {mask.mean() / 255:.0%} of the frame: there is no background "
                    "left to move it over", (*loc, "mask"))
    # The trajectory's length was checked at submit and its points against the image when the
    # request was resolved (endpoints.rules): here they only move to output pixels.
    return BrushStroke(mask, tuple(cover.point(x, y) for x, y in dm.trajectory))


def _camera_for(request: GenerationRequest, prompt: str, strength: float, still_by_default: bool) -> Move:
    if request.camera is not None:
        move = PRESETS[CameraPreset(request.camera)]
    elif request.advanced_camera is not None:  # its value is its strength: guidance does not scale it
        return advanced_move(*request.advanced_camera)
    elif still_by_default:
        return STILL
    else:
        move = move_from_prompt(prompt) or PUSH_IN
    return STILL if move.is_still else move.scaled(strength)


def _check_images(request: GenerationRequest) -> None:
    if request.start_image is not None:
        _check_image(request.start_image, ("start_image",), "start image")
    if request.end_image is not None:
        _check_image(request.end_image, ("end_image",), "end image")
    for i, img in enumerate(request.reference_images):
        _check_image(img, ("reference_images", i), f"reference image {i + 1}")
    for i, element in enumerate(request.elements):
        _check_image(element.frontal, ("elements", i, "frontal"), f"frontal image of element {i + 1}")
        for j, view in enumerate(element.references):
            _check_image(view, ("elements", i, "references", j), f"reference image {j + 1} of element {i + 1}")
        if element.video_frame is not None and element.video_frame is not element.frontal:
            _check_image(element.video_frame, ("elements", i, "video"), f"video frame of element {i + 1}")


def _aspect(request: GenerationRequest) -> Aspect:
    if request.aspect:
        return Aspect(request.aspect)
    if request.start_image is not None:
        return nearest_aspect(request.start_image.shape[1], request.start_image.shape[0])
    return Aspect.LANDSCAPE  # no image to follow: fal's default aspect_ratio


def _groups(stills: list[Still], shots: tuple[Shot, ...]) -> list[list[Still]]:
    """The stills each shot shows: all of them spread over the shots in order (in proportion to the
    shots' lengths), or, with more shots than stills, one each, starting over from the first."""
    if len(stills) < len(shots):
        return [[stills[k % len(stills)]] for k in range(len(shots))]
    counts = allot(len(stills), [s.seconds for s in shots])
    bounds = np.cumsum([0, *counts])
    return [stills[bounds[k]:bounds[k + 1]] for k in range(len(shots))]


def _opening_notes(first: Still, request: GenerationRequest, pictures: list, left_out: list, label: str) -> list[str]:
    notes = [f"{ENGINE} engine: animates still images with geometry and optical flow; it is not generative and "
             "invents no new content"]
    if first.kind == "procedural":
        notes.append("text-to-video: the start frame is procedural (seeded shapes and texture, palette from a hash "
                     "of the prompt), not generated from the prompt; the prompt's camera phrases move over it")
    if pictures:
        shown = [p.label for p in pictures if p not in left_out]
        notes.append(f"references approximated: {', '.join(shown)} shown in turn, each cover-cropped whole to "
                     f"{label}{' after the start image' if first.kind == 'start' else ''}; "
                     "they are not composed into one scene and nothing in them is animated")
    if left_out:
        notes.append(f"left out (at least {MIN_FRAMES_PER_STILL} frames per picture in {request.seconds} s): "
                     + ", ".join(p.label for p in left_out))
    voices = [f"@Element{i + 1}: {e.voice_id}" for i, e in enumerate(request.elements) if e.voice_id]
    if voices:
        notes.append(f"element voices noted ({', '.join(voices)}); no speech is synthesised")
    return notes


def build_plan(request: GenerationRequest, size_scale: float = 1.0) -> RenderPlan:
    """Validate ``request`` and decide every shot; raises ``EngineError``."""
    _check_images(request)
    _check_shots(request)
    split_note = None
    if ShotType(request.shot_type) is ShotType.INTELLIGENT and len(request.shots) == 1:
        pieces = split_prompt(request.shots[0].prompt, request.seconds)
        request = replace(request, shots=tuple(Shot(text, sec) for text, sec in pieces))
        split_note = "shot_type intelligent: the prompt split into " + "; ".join(
            f"shot {k + 1} ({sec} s): {text!r}" for k, (text, sec) in enumerate(pieces))
    _check_combinations(request)

    aspect = _aspect(request)
    W, H = output_size(aspect, size_scale, request.tier)
    label = aspect.value
    image = request.start_image
    stills: list[Still] = []
    static, strokes, crop_note = None, (), ""
    if image is not None:
        h, w = image.shape[:2]
        cover = _cover(image, W, H, label, ("aspect",) if request.aspect else ("start_image",), "input image")
        stills.append(Still("start image", given(image), cover, "start"))
        crop_note = f"; cover-crop keeps {cover.kept_fraction:.0%} of the {w}x{h} input"
        if request.static_mask is not None:
            static = _mask(request.static_mask, (h, w), cover, ("static_mask",), "static mask")
        strokes = tuple(_stroke(i, dm, (h, w), cover) for i, dm in enumerate(request.dynamic_masks))
    pictures = references(request)
    kept, left_out = fit(pictures, len(stills), request.seconds * FPS)
    stills += [Still(p.label, given(p.image), _cover(p.image, W, H, label, p.loc, p.label)) for p in kept]
    if not stills:
        stills.append(Still("procedural start frame", procedural(request.prompt, request.seed, W, H),
                            Cover.fit(W, H, W, H), "procedural"))
    end_cover = None
    if request.end_image is not None:
        end_cover = _cover(request.end_image, W, H, label, ("end_image",), "end image")

    power = strength(request.guidance)
    notes = _opening_notes(stills[0], request, pictures, left_out, label)
    notes.append(f"output {W}x{H} ({label}), {request.seconds} s at {FPS} fps{crop_note}")
    if split_note:
        notes.append(split_note)
    if request.negative_prompt:
        notes.append("negative_prompt is ignored (nothing is generated)")
    if request.camera is None and request.advanced_camera is None and (strokes or static is not None):
        notes.append("camera stays still (motion-brush masks and no camera preset)")
    if request.advanced_camera is not None:
        kind, value = request.advanced_camera
        if request.camera is not None:
            notes.append(f"advanced_camera_control ({kind} {value:+g}) is ignored: camera_control is set")
        elif abs(value) > ADVANCED_LIMIT:
            notes.append(f"advanced_camera_control value {value:g} is beyond Kling's ±{ADVANCED_LIMIT:g}: "
                         f"moved as {ADVANCED_LIMIT if value > 0 else -ADVANCED_LIMIT:+g}")

    parts: list[Renderer] = []
    activity: list[np.ndarray] = []  # per frame, 0..1: drives the soundtrack
    # With masks (and no camera_control) the camera stays still: a static region must stay put.
    # The part that morphs into an end image has no camera at all: it must land on that image.
    still_by_default = bool(strokes) or static is not None
    n_shots = len(request.shots)
    end = request.end_image
    end_still = (lambda: end_cover.image(end)) if end is not None else None
    shown: set[int] = set()
    repeats = 0  # shots showing a still again: they get a closer framing (a new view of it)
    for k, (shot, group) in enumerate(zip(request.shots, _groups(stills, request.shots))):
        frames = shot.seconds * FPS
        morph_end = k == n_shots - 1 and end is not None
        prefix = f"shot {k + 1}: " if n_shots > 1 else ""
        move = _camera_for(request, shot.prompt, power, still_by_default)
        scaled = request.camera is not None or request.advanced_camera is None  # by guidance
        how = "" if move.is_still or not scaled else f" (strength {power:.2f} from guidance {request.guidance:g})"
        if len(group) > 1:
            lengths, fade = dissolve_lengths(frames, len(group))
            sub: list[Renderer] = []
            curve = np.zeros(frames)
            for j, (still, n) in enumerate(zip(group, lengths)):
                offset = sum(lengths[:j]) - j * fade
                if morph_end and j == len(group) - 1:
                    sub.append(Morph(still.whole, end_still, n))
                    amount = 0.8
                else:
                    sub.append(Scene(still.whole, n, move))
                    amount = _move_amount(move, False)
                curve[offset:offset + n] = np.maximum(curve[offset:offset + n], amount * eased_speed(n))
                shown.add(id(still))
            parts.append(Dissolve(sub, fade, [s.label for s in group]))
            activity.append(_with_cut(curve, k))
            notes.append(f"{prefix}{' → '.join(s.label for s in group)} ({fade}-frame cross-dissolves); camera: "
                         f"{move.name}{how}{'; morphs into the end image' if morph_end else ''}")
            continue
        still = group[0]
        if morph_end:
            parts.append(Morph(still.whole, end_still, frames))
            activity.append(_with_cut(0.8 * eased_speed(frames), k))
            notes.append(f"{prefix}{still.label + ', ' if len(stills) > 1 else ''}camera still; morphs into the end "
                         "image along optical flow")
            continue
        share, where = 1.0, (W / 2, H / 2)
        if id(still) in shown:
            share = FRAMINGS[framing_from_prompt(shot.prompt) or DEFAULT_CYCLE[repeats % len(DEFAULT_CYCLE)]]
            if share < 1.0:
                where = lambda s=still, r=repeats: s.focus()[r % len(s.focus())]  # noqa: E731
            repeats += 1
        shown.add(id(still))
        parts.append(Scene(framed_still(still.original, still.cover, share, where), frames, move, strokes, static))
        activity.append(_with_cut(_move_amount(move, bool(strokes)) * eased_speed(frames), k))
        framing = "" if n_shots == 1 else f"{'wide' if share == 1 else 'medium' if share > 0.6 else 'close'} framing, "
        shows = f"{still.label}, " if len(stills) > 1 else ""
        notes.append(f"{prefix}{shows}{framing}camera: {move.name}{how}")

    renderer = Sequence(parts)
    info = {"engine": ENGINE, "generative": False, "width": W, "height": H, "fps": FPS,
            "frames": renderer.frames, "aspect_ratio": label, "tier": Tier(request.tier).value,
            "start_frame": {"start": "the start image", "procedural": "procedural (not generative)",
                            "reference": stills[0].label}[stills[0].kind]}
    if pictures:
        info["references"] = [p.label for p in kept]
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
