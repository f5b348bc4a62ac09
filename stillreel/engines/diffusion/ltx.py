"""LTX-Video 0.9.x through ``LTXConditionPipeline``: image keyframes at any frame index.

The published folders name ``LTXPipeline`` (text to video); the condition pipeline has the same
components and places the start image at frame 0 and the end image at the last frame; with
neither it generates from the prompt alone (text to video).
"""

from __future__ import annotations

import math

import torch

from stillreel.engines.diffusion.call import Call, Output, StepCallback, call_kwargs, video_to_uint8
from stillreel.engines.diffusion.families import Family
from stillreel.engines.diffusion.sizing import guidance_scale


def load(model: str, dtype: torch.dtype):
    from diffusers import LTXConditionPipeline

    return LTXConditionPipeline.from_pretrained(model, dtype=dtype)


def denoisers(pipe) -> list:
    return [pipe.transformer]


def frame_quantum(pipe) -> int:
    return int(pipe.vae_temporal_compression_ratio * pipe.transformer_temporal_patch_size)


def size_multiple(pipe) -> int:
    # The pipeline insists on multiples of 32 whatever the VAE (real checkpoints compress 32× anyway).
    return math.lcm(32, int(pipe.vae_spatial_compression_ratio * pipe.transformer_spatial_patch_size))


def run(pipe, family: Family, call: Call, on_step_end: StepCallback) -> Output:
    from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition

    # No conditions at all is plain text to video on the same weights.
    conditions = [LTXVideoCondition(image=call.image, frame_index=0)] if call.image is not None else []
    if call.last_image is not None:
        conditions.append(LTXVideoCondition(image=call.last_image, frame_index=call.frames - 1))
    guidance = guidance_scale(call.cfg, family.guidance)
    kwargs = call_kwargs(call, on_step_end, guided=guidance > 1.0, guidance_scale=guidance,
                         conditions=conditions or None, frame_rate=call.fps)
    if pipe.vae.config.timestep_conditioning:
        # 0.9.1+ VAEs denoise while decoding; these are the values Lightricks' examples use.
        kwargs.update(decode_timestep=0.05, decode_noise_scale=0.025)
    out = pipe(**kwargs)
    return Output(video_to_uint8(out.frames[0]))
