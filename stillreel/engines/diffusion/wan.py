"""Wan image-to-video through ``WanImageToVideoPipeline``: Wan2.1 I2V and FLF2V, Wan2.2 I2V-A14B and TI2V-5B.

One pipeline class serves all four checkpoints; they differ in what the folder holds:
- Wan2.1 I2V / FLF2V: a CLIP image encoder; FLF2V's transformer embeds both images' CLIP tokens,
  so it takes ``last_image``.
- Wan2.2 I2V-A14B: two experts (``transformer`` for high noise, ``transformer_2`` for low noise)
  with their own guidance scales (``guidance_scale``, ``guidance_scale_2``), no image encoder.
- Wan2.2 TI2V-5B: the image becomes the first latent frame (``expand_timesteps``); its published
  folder names ``WanPipeline``, and loading it as ``WanImageToVideoPipeline`` is what the docs do;
  without a start image it runs as ``WanPipeline`` on the same modules (wan_t2v.py).
The model cards load the VAE and the image encoder in float32 and the rest in bfloat16; so do we.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from stillreel.engines.diffusion import wan_t2v
from stillreel.engines.diffusion.call import Call, Output, StepCallback, call_kwargs, video_to_uint8
from stillreel.engines.diffusion.families import Family
from stillreel.engines.diffusion.sizing import guidance_scale
# The text-to-video pipeline's VAE and patch geometry are the image ones' too.
from stillreel.engines.diffusion.wan_t2v import denoisers, frame_quantum, size_multiple  # noqa: F401 (driver interface)


def load(model: str, dtype: torch.dtype):
    from diffusers import WanImageToVideoPipeline

    # Per-component dtypes, as the model cards load them (absent components are skipped).
    dtypes = {"default": dtype, "vae": torch.float32, "image_encoder": torch.float32}
    return WanImageToVideoPipeline.from_pretrained(model, dtype=dtypes)


def run(pipe, family: Family, call: Call, on_step_end: StepCallback) -> Output:
    if call.image is None:  # TI2V-5B from text alone (the only image family that has text_to_video)
        return wan_t2v.run(pipe, family, call, on_step_end)
    guidance = guidance_scale(call.cfg, family.guidance)
    kwargs = call_kwargs(call, on_step_end, guided=guidance > 1.0, guidance_scale=guidance, image=call.image)
    if getattr(pipe, "transformer_2", None) is not None:
        kwargs["guidance_scale_2"] = guidance  # the low-noise expert: the card uses the same value
    if call.last_image is not None:
        kwargs["last_image"] = call.last_image
        out = pipe(**kwargs)
    elif family.end_frame:
        with _start_image_twice(pipe):
            out = pipe(**kwargs)
    else:
        out = pipe(**kwargs)
    return Output(video_to_uint8(out.frames[0]))


@contextmanager
def _start_image_twice(pipe):
    """FLF2V without an end frame: its transformer reads CLIP tokens of two images, so give it the
    start image's twice. Only the CLIP tokens repeat; the latent conditioning still pins frame 0 alone
    (the pipeline refuses ``image_embeds`` next to ``image``, hence the scoped override)."""
    encode = pipe.encode_image
    pipe.encode_image = lambda image, device=None: encode([image, image], device)
    try:
        yield
    finally:
        del pipe.encode_image  # the class's method shows through again
