"""From a queued ``Plan`` to a ``GenerationRequest``: fetch the inputs, decode them, check them.

Runs in the worker after the claim: everything here that fails is the caller's input (an
unreachable URL, a file that is not an image, a mask that does not fit), reported as
``EngineError`` with fal's error type, located by the normalized request's attribute
(``("end_image",)``, ``("elements", 0, "frontal")``); the endpoint maps it to its fal field. Blocking: async callers
run ``resolve`` in a thread.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from stillreel.config import Limits
from stillreel.endpoints.request_plan import Plan
from stillreel.endpoints.rules import check_trajectory
from stillreel.engines.base import (
    Aspect,
    BrushPath,
    CameraPreset,
    Element,
    EngineError,
    GenerationRequest,
    Mask,
    Shot,
    ShotType,
    Tier,
)
from stillreel.engines.base import Image as RGBImage
from stillreel.media.fetch import Fetcher, field_loc, field_name

ASPECT_TOLERANCE = 0.02  # a mask may differ from the start image's aspect ratio by this much

__all__ = ["decode_image", "decode_mask", "decode_video_frame", "resolve", "trajectory_to_top_left"]

_LOAD_ERRORS = (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def _open(data: bytes, field, limits: Limits) -> Image.Image:
    """Open an image, checking its size from the header before decoding any pixel."""
    with warnings.catch_warnings():
        # Pillow warns about "bombs" from ~89 Mpx on; our own (configurable) limit is checked below.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError:
            raise EngineError(
                f"The image at {field_name(field)} is too large to decode", "image_too_large", field_loc(field)
            ) from None
        except _LOAD_ERRORS:
            raise EngineError(
                f"The file at {field_name(field)} is not an image this server can read "
                "(PNG, JPEG, WebP, GIF, BMP, TIFF …)",
                "image_load_error",
                field_loc(field),
            ) from None
        _check_size(*image.size, "image", field, limits)
        try:
            image.load()
            # Phones store pictures sideways plus an EXIF note; callers see them upright.
            return ImageOps.exif_transpose(image)
        except _LOAD_ERRORS:
            raise EngineError(
                f"The image at {field_name(field)} is damaged or truncated and cannot be decoded",
                "image_load_error",
                field_loc(field),
            ) from None


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    )


def decode_image(data: bytes, field: str | Sequence, limits: Limits) -> RGBImage:
    """RGB uint8 array (h, w, 3), upright. Transparent pixels are laid over white."""
    image = _open(data, field, limits)
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(canvas, rgba)
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))


def _check_size(width: int, height: int, what: str, field, limits: Limits) -> None:
    if width * height > limits.max_image_pixels:
        raise EngineError(f"The {what} at {field_name(field)} is {width}×{height} ({width * height} pixels); "
                          f"the limit is {limits.max_image_pixels} pixels", "image_too_large", field_loc(field))
    if min(width, height) < limits.min_image_side:
        raise EngineError(f"The {what} at {field_name(field)} is {width}×{height}; each side must be at least "
                          f"{limits.min_image_side} pixels", "image_too_small", field_loc(field))


def _video_format(data: bytes) -> str | None:
    """The container, from its first bytes: only formats that cannot make FFmpeg open anything
    else. Left to guess, FFmpeg may take a playlist (HLS) or a concat list, formats that name
    other files and URLs for FFmpeg to open itself, past the fetcher's address guard."""
    if data[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        return "mov"  # MP4, MOV, M4V, 3GP (external data references are off by default)
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"  # WebM, MKV
    if data[:4] == b"RIFF" and data[8:12] == b"AVI ":
        return "avi"
    return None


def decode_video_frame(data: bytes, field: str | Sequence, limits: Limits) -> RGBImage:
    """The first frame of a video (an element given as a video), RGB uint8 (h, w, 3), upright
    (the stream's display rotation applied, as an image's EXIF orientation is); its size is
    checked from the stream's header, as an image's, before any frame is decoded."""
    import av  # PyAV: the encoder's library; imported here, where a video is read

    unreadable = EngineError(f"The file at {field_name(field)} is not a video this server can read "
                             "(MP4, MOV, WebM, MKV, AVI)", "unsupported_video_format", field_loc(field))
    container_format = _video_format(data)
    if container_format is None:
        raise unreadable
    try:
        with av.open(io.BytesIO(data), format=container_format) as container:
            if not container.streams.video:
                raise unreadable
            stream = container.streams.video[0]
            _check_size(stream.codec_context.width, stream.codec_context.height, "video", field, limits)
            for frame in container.decode(stream):
                _check_size(frame.width, frame.height, "video", field, limits)  # the header may lie
                rgb = frame.to_ndarray(format="rgb24")
                turns = round(frame.rotation / 90) % 4  # counterclockwise quarter turns to display it
                return np.ascontiguousarray(np.rot90(rgb, turns) if turns else rgb)
    except (av.FFmpegError, ValueError, OSError):
        raise unreadable from None
    raise EngineError(f"The video at {field_name(field)} has no frame", "unsupported_video_format",
                      field_loc(field))


def _mask_values(image: Image.Image) -> Image.Image:
    """The grayscale layer that says what is selected: the alpha channel when the mask has real
    transparency (strokes painted on a transparent canvas), else the luminance."""
    if _has_alpha(image):
        alpha = image.convert("RGBA").getchannel("A")
        low, _ = alpha.getextrema()
        if low < 255:
            return alpha
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        values = np.asarray(image, dtype=np.float64)
        peak = values.max()
        scaled = values * (255.0 / peak) if peak > 255 else values
        return Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8))
    return image.convert("L")


def decode_mask(data: bytes, field: str | Sequence, size: tuple[int, int], limits: Limits) -> Mask:
    """A binary uint8 mask (255 = selected) the size ``(width, height)`` of the start image.

    Values are thresholded at half the mask's brightest value, so white-on-black, 0/1 and faint
    masks all work, and JPEG noise does not leak into the selection. A mask of another size is
    scaled when its aspect ratio matches the image's (within 2%), else refused.
    """
    width, height = size
    layer = _mask_values(_open(data, field, limits))
    if layer.size != (width, height):
        mw, mh = layer.size
        if abs((mw / mh) / (width / height) - 1) > ASPECT_TOLERANCE:
            raise EngineError(
                f"The mask at {field_name(field)} is {mw}×{mh} but the start image is {width}×{height}: "
                "a mask must have the start image's size or at least its aspect ratio",
                "value_error",
                field_loc(field),
            )
        layer = layer.resize((width, height), Image.Resampling.BILINEAR)
    values = np.asarray(layer, dtype=np.uint8)
    peak = int(values.max())
    if peak == 0:
        return np.zeros((height, width), dtype=np.uint8)
    return np.where(values.astype(np.uint16) * 2 >= peak, 255, 0).astype(np.uint8)


def trajectory_to_top_left(
    points: Sequence[tuple[float, float]], size: tuple[int, int], mask_index: int = 0
) -> tuple[tuple[float, float], ...]:
    """Kling's points (input-image pixels, origin bottom-left) → top-left origin, once
    ``rules.check_trajectory`` found them all on the image."""
    check_trajectory(points, size, mask_index)
    height = size[1]
    return tuple((float(x), float(height - y)) for x, y in points)


def _enum(kind, value, field: str):
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(m.value for m in kind)
        raise EngineError(f"{field} must be one of {choices}, got {value!r}", "value_error", field_loc(field)) from None


def _image(fetcher: Fetcher, url: str, field) -> RGBImage:
    return decode_image(fetcher.fetch(url, field), field, fetcher.limits)


def resolve(plan: Plan, fetcher: Fetcher) -> GenerationRequest:
    """Fetch and decode every input of ``plan``; raises ``EngineError`` for bad inputs."""
    limits = fetcher.limits
    start = _image(fetcher, plan.start_image_url, "start_image") if plan.start_image_url else None
    end = _image(fetcher, plan.end_image_url, "end_image") if plan.end_image_url is not None else None
    references = tuple(_image(fetcher, url, ("reference_images", i)) for i, url in enumerate(plan.reference_image_urls))
    elements = []
    for i, planned in enumerate(plan.elements):
        # An element given as a video (reaches here only for an engine that takes them): its
        # first frame is its frontal view, or one more picture of it beside a frontal image.
        still = None
        if planned.video_url is not None:
            field = ("elements", i, "video")
            still = decode_video_frame(fetcher.fetch(planned.video_url, field), field, fetcher.limits)
        views = tuple(_image(fetcher, url, ("elements", i, "references", j))
                      for j, url in enumerate(planned.reference_urls))
        if planned.frontal_url is not None:
            frontal = _image(fetcher, planned.frontal_url, ("elements", i, "frontal"))
        elif still is not None:
            frontal = still
        else:
            continue  # neither: refused at submit (endpoints.rules)
        elements.append(Element(frontal=frontal, references=views, voice_id=planned.voice_id, video_frame=still))

    static, dynamic = None, []
    if plan.static_mask_url is not None or plan.dynamic_masks:
        if start is None:
            raise EngineError("motion brush masks need a start image", "value_error", ("static_mask",))
        size = (start.shape[1], start.shape[0])
        if plan.static_mask_url is not None:
            data = fetcher.fetch(plan.static_mask_url, "static_mask")
            static = decode_mask(data, "static_mask", size, limits)
        for i, planned in enumerate(plan.dynamic_masks):
            field = ("dynamic_masks", i, "mask")
            # Check the cheap part first: a bad trajectory fails before any download.
            trajectory = trajectory_to_top_left(planned.trajectory, size, i)
            mask = decode_mask(fetcher.fetch(planned.mask_url, field), field, size, limits)
            dynamic.append(BrushPath(mask=mask, trajectory=trajectory))

    return GenerationRequest(
        start_image=start,
        shots=tuple(Shot(prompt, int(seconds)) for prompt, seconds in plan.shots),
        seconds=int(plan.seconds),
        guidance=float(plan.guidance),
        negative_prompt=plan.negative_prompt,
        end_image=end,
        aspect=_enum(Aspect, plan.aspect, "aspect"),
        camera=_enum(CameraPreset, plan.camera, "camera"),
        static_mask=static,
        dynamic_masks=tuple(dynamic),
        audio=bool(plan.audio),
        seed=int(plan.seed),
        tier=Tier(plan.tier),
        shot_type=ShotType(plan.shot_type),
        reference_images=references,
        elements=tuple(elements),
        voices=tuple(plan.voices),
        advanced_camera=plan.advanced_camera,
    )
