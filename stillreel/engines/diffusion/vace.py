"""Wan VACE through ``WanVACEPipeline``: text, start and end frames, and reference images in one model.

VACE conditions on a *control video* with a *mask*: frames the mask keeps (black) are given, frames
it marks (white) are generated; a generated frame's pixels are mid-grey in the control video, as in
VACE's own preprocessing. So:
- text to video: no control video at all (the pipeline fills in grey and an all-white mask);
- start frame: frame 0 given, the rest generated; end frame: the last frame given as well;
- reference images (Kling's ``image_urls`` and its elements' pictures): ``reference_images``, which
  the pipeline letterboxes onto the frame size and prepends as extra latent frames (then drops).
The model card loads the VAE in float32 and the rest in bfloat16; so do we.
"""

from __future__ import annotations

import torch
from PIL import Image as PILImage

from stillreel.engines.diffusion.call import Call, Output, StepCallback, call_kwargs, video_to_uint8
from stillreel.engines.diffusion.families import Family
from stillreel.engines.diffusion.sizing import guidance_scale
# The same Wan VAE and patch geometry.
from stillreel.engines.diffusion.wan_t2v import denoisers, frame_quantum, size_multiple  # noqa: F401 (driver interface)

GREY = (127, 127, 127)  # an unknown frame in a VACE control video
KEEP, GENERATE = 0, 255  # mask values


def load(model: str, dtype: torch.dtype):
    from diffusers import WanVACEPipeline

    return WanVACEPipeline.from_pretrained(model, dtype={"default": dtype, "vae": torch.float32})


def control(call: Call) -> tuple[list, list] | tuple[None, None]:
    """The control video and mask that pin ``call``'s start and end frames (None, None: neither)."""
    if call.image is None and call.last_image is None:
        return None, None
    size = (call.width, call.height)
    video = [PILImage.new("RGB", size, GREY) for _ in range(call.frames)]
    mask = [PILImage.new("L", size, GENERATE) for _ in range(call.frames)]
    for index, image in ((0, call.image), (call.frames - 1, call.last_image)):
        if image is not None:
            video[index], mask[index] = image, PILImage.new("L", size, KEEP)
    return video, mask


def run(pipe, family: Family, call: Call, on_step_end: StepCallback) -> Output:
    guidance = guidance_scale(call.cfg, family.guidance)
    video, mask = control(call)
    kwargs = call_kwargs(call, on_step_end, guided=guidance > 1.0, guidance_scale=guidance, video=video, mask=mask,
                         reference_images=list(call.references) or None)
    if getattr(pipe, "transformer_2", None) is not None:
        kwargs["guidance_scale_2"] = guidance
    out = pipe(**kwargs)
    return Output(video_to_uint8(out.frames[0]))
