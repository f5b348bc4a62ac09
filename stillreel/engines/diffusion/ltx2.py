"""LTX-2 through ``LTX2ConditionPipeline``: video and its audio track in one pass.

The start image conditions frame 0 and the end image the last frame (``index=-1``); with neither
it runs from the prompt alone. LTX-2 has
four guidance knobs per modality — text CFG, spatio-temporal guidance (STG), modality isolation
and rescale; cfg_scale scales the first three together so that 0 turns every extra pass off and
0.5 gives the model card's values (video CFG 3, audio CFG 7, STG 1 on block 28, modality 3).
"""

from __future__ import annotations

import numpy as np
import torch

from stillreel.engines.base import Audio
from stillreel.engines.diffusion.call import Call, Output, StepCallback, call_kwargs, video_to_uint8
from stillreel.engines.diffusion.families import Family
# LTX-2 keeps LTX-Video's VAE and patch geometry.
from stillreel.engines.diffusion.ltx import denoisers, frame_quantum, size_multiple  # noqa: F401 (driver interface)
from stillreel.engines.diffusion.sizing import guidance_scale

VIDEO_GUIDANCE = 3.0
AUDIO_GUIDANCE = 7.0
STG_SCALE = 1.0
STG_BLOCKS = (28,)
MODALITY_SCALE = 3.0


def load(model: str, dtype: torch.dtype):
    from diffusers import LTX2ConditionPipeline

    return LTX2ConditionPipeline.from_pretrained(model, dtype=dtype)


def sample_rate(pipe) -> int:
    return int(pipe.vocoder.config.output_sampling_rate)


def guidance_knobs(cfg: float, recommended: float, num_layers: int) -> dict:
    """LTX-2's guidance arguments for fal's cfg_scale (see the module docstring).

    ``recommended`` is the video CFG that cfg_scale 0.5 maps to (3.0 unless the ``guidance`` option
    says otherwise); the audio, STG and modality defaults move with it, so ``guidance = 1`` for a
    distilled checkpoint turns every guidance pass off.
    """
    cfg = min(1.0, max(0.0, float(cfg)))
    strength = (recommended - 1.0) / (VIDEO_GUIDANCE - 1.0)

    def scaled(default: float) -> float:
        return guidance_scale(cfg, 1.0 + (default - 1.0) * strength)

    # STG perturbs named blocks; a checkpoint with fewer blocks (a distilled or test model) gets none.
    blocks = [b for b in STG_BLOCKS if b < num_layers]
    stg = 2.0 * cfg * STG_SCALE * strength if blocks else 0.0
    return dict(
        guidance_scale=guidance_scale(cfg, recommended),
        audio_guidance_scale=scaled(AUDIO_GUIDANCE),
        stg_scale=stg,
        audio_stg_scale=stg,
        modality_scale=scaled(MODALITY_SCALE),
        audio_modality_scale=scaled(MODALITY_SCALE),
        spatio_temporal_guidance_blocks=blocks or None,
    )


def run(pipe, family: Family, call: Call, on_step_end: StepCallback) -> Output:
    from diffusers.pipelines.ltx2.pipeline_ltx2_condition import LTX2VideoCondition

    # No conditions at all is text to video (and audio) on the same weights.
    conditions = [LTX2VideoCondition(frames=call.image, index=0)] if call.image is not None else []
    if call.last_image is not None:
        conditions.append(LTX2VideoCondition(frames=call.last_image, index=-1))
    knobs = guidance_knobs(call.cfg, family.guidance, pipe.transformer.config.num_layers)
    guided = knobs["guidance_scale"] > 1.0 or knobs["audio_guidance_scale"] > 1.0
    out = pipe(**call_kwargs(call, on_step_end, guided=guided, conditions=conditions or None,
                             frame_rate=float(call.fps), **knobs))
    audio = out.audio[0].float().clamp(-1.0, 1.0).cpu().numpy().astype(np.float32)
    if audio.ndim == 1:
        audio = audio[None, :]
    return Output(video_to_uint8(out.frames[0]), Audio(audio, sample_rate(pipe)))
