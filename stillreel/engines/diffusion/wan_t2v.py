"""Wan text-to-video through ``WanPipeline``: Wan2.1 T2V (1.3B, 14B), Wan2.2 T2V-A14B, and TI2V-5B without an image.

- Wan2.1 T2V: one transformer whose input is the 16 noise channels alone (image-to-video ones take 36).
- Wan2.2 T2V-A14B: two experts like I2V-A14B; the card guides the high-noise one at 4.0 and the
  low-noise one at 3.0, so cfg_scale moves both from their own recommended values.
- Wan2.2 TI2V-5B is loaded as ``WanImageToVideoPipeline`` (wan.py); a request without a start
  image runs here on a ``WanPipeline`` that shares its modules (``text_pipeline``): no second copy
  of the weights, and the speed settings applied to the transformer hold for both.
The model cards load the VAE in float32 and the rest in bfloat16; so do we.
"""

from __future__ import annotations

import weakref

import torch

from stillreel.engines.diffusion.call import Call, Output, StepCallback, call_kwargs, video_to_uint8
from stillreel.engines.diffusion.families import Family
from stillreel.engines.diffusion.sizing import guidance_scale

_TEXT_VIEWS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def load(model: str, dtype: torch.dtype):
    from diffusers import WanPipeline

    return WanPipeline.from_pretrained(model, dtype={"default": dtype, "vae": torch.float32})


def denoisers(pipe) -> list:
    return [m for m in (pipe.transformer, getattr(pipe, "transformer_2", None)) if m is not None]


def frame_quantum(pipe) -> int:
    return int(pipe.vae_scale_factor_temporal)


def size_multiple(pipe) -> int:
    return int(pipe.vae_scale_factor_spatial * pipe.transformer.config.patch_size[1])


def text_pipeline(pipe):
    """A ``WanPipeline`` over an image-to-video Wan pipeline's own modules (made once per pipeline)."""
    from diffusers import WanPipeline

    if isinstance(pipe, WanPipeline):
        return pipe
    if pipe not in _TEXT_VIEWS:

        class TextView(WanPipeline):
            # Step-cache hooks installed at load (pyramid attention broadcast) read the loaded
            # pipeline's current_timestep: keep it in step with the view's.
            def __setattr__(self, name, value):
                super().__setattr__(name, value)
                if name == "_current_timestep" and (owner := image_pipe()) is not None:
                    owner._current_timestep = value

        image_pipe = weakref.ref(pipe)  # the cache's value must not keep its key alive
        parts = ("tokenizer", "text_encoder", "transformer", "vae", "scheduler", "transformer_2")
        view = TextView(**{name: getattr(pipe, name, None) for name in parts},
                        boundary_ratio=pipe.config.boundary_ratio, expand_timesteps=pipe.config.expand_timesteps)
        view.set_progress_bar_config(disable=True)
        _TEXT_VIEWS[pipe] = view
    return _TEXT_VIEWS[pipe]


def run(pipe, family: Family, call: Call, on_step_end: StepCallback) -> Output:
    pipe = text_pipeline(pipe)
    guidance = guidance_scale(call.cfg, family.guidance)
    kwargs = call_kwargs(call, on_step_end, guided=guidance > 1.0, guidance_scale=guidance)
    if getattr(pipe, "transformer_2", None) is not None:
        second = family.guidance_2 if family.guidance_2 is not None else family.guidance
        kwargs["guidance_scale_2"] = guidance_scale(call.cfg, second)
    out = pipe(**kwargs)
    return Output(video_to_uint8(out.frames[0]))
