"""Speed settings, all built into diffusers, applied once after loading.

Lossless (same maths, the output moves only by floating-point noise):
- attention backend: FlashAttention-3 on Hopper, else FlashAttention-2, else PyTorch SDPA;
- regional ``torch.compile`` of the repeated transformer blocks (a short warm-up, then fused kernels);
- VAE tiling (lower peak memory; on by default only when offloading, where memory is the limit).

Lossy (trade a little fidelity for speed; off unless asked for): step caching hooks that reuse
transformer outputs between steps — first-block cache, TaylorSeer, pyramid attention broadcast,
MagCache.

Not done, on purpose: batching the conditional and unconditional CFG passes into one forward
(LTX pipelines already do; Wan does not). At the sequence lengths of a 5 s clip (tens of
thousands of tokens) one pass already fills the GPU, so batching saves launch overhead only and
doubles activation memory.
"""

from __future__ import annotations

import importlib.util
import logging

import torch

from stillreel.engines.diffusion.options import CacheSpec, DiffusionOptions, OptionsError

log = logging.getLogger(__name__)

# Tried in order by attention = "auto" on CUDA: fastest lossless kernel that is installed.
AUTO_ATTENTION = (("_flash_3", "flash_attn_interface"), ("flash", "flash_attn"))


def apply(
    pipe, denoisers: list, options: DiffusionOptions, device: torch.device, dtype: torch.dtype, steps: int
) -> dict:
    """Apply the options' speed settings; returns what was applied (recorded with each clip)."""
    applied = {"attention": _attention(denoisers, options.attention, device, dtype)}
    if options.cache is not None:
        for model in denoisers:
            model.enable_cache(_cache_config(options.cache, pipe, steps))
        applied["cache"] = options.cache.kind
    tiling = options.vae_tiling if options.vae_tiling is not None else options.offload != "none"
    if tiling:
        pipe.vae.enable_tiling()
    applied["vae_tiling"] = tiling
    # Offload hooks move weights under the compiled code's feet: compile by default only without them.
    compile_ = options.compile
    if compile_ is None:
        compile_ = device.type == "cuda" and options.offload == "none"
    if compile_:
        # Aspect ratios and durations give a handful of shapes; let each keep its compiled graph.
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
        # Cache hooks put Python control flow around the blocks (skip or recompute this step?),
        # which a full graph cannot hold: with a cache, compile with graph breaks at the hooks.
        for model in denoisers:
            model.compile_repeated_blocks(fullgraph=options.cache is None)
    applied["compile"] = compile_
    return applied


def _attention(denoisers: list, name: str, device: torch.device, dtype: torch.dtype) -> str:
    if name == "auto":
        candidates = []
        if device.type == "cuda" and dtype in (torch.bfloat16, torch.float16):
            candidates = [b for b, module in AUTO_ATTENTION if importlib.util.find_spec(module) is not None]
        for backend in candidates:
            try:
                _set_backend(denoisers, backend)
                return backend
            except (RuntimeError, ValueError) as exc:  # installed but unusable on this GPU
                log.info("attention backend %s unavailable: %s", backend, exc)
        name = "native"
    try:
        _set_backend(denoisers, name)
    except (RuntimeError, ValueError) as exc:
        raise OptionsError(f"diffusion engine: option 'attention' = {name!r} cannot be used: {exc}") from None
    return name


def _set_backend(denoisers: list, backend: str) -> None:
    for model in denoisers:
        model.set_attention_backend(backend)


def _cache_config(spec: CacheSpec, pipe, steps: int):
    from diffusers.hooks import (FirstBlockCacheConfig, MagCacheConfig, PyramidAttentionBroadcastConfig,
                                 TaylorSeerCacheConfig)

    params = dict(spec.params)
    try:
        if spec.kind == "first_block":
            return FirstBlockCacheConfig(**{"threshold": 0.05, **params})
        if spec.kind == "taylorseer":
            return TaylorSeerCacheConfig(**params)
        if spec.kind == "pab":
            defaults = {"spatial_attention_block_skip_range": 2, "spatial_attention_timestep_skip_range": (100, 800)}
            return PyramidAttentionBroadcastConfig(
                **{**defaults, **params}, current_timestep_callback=lambda: pipe.current_timestep
            )
        return MagCacheConfig(**{"num_inference_steps": steps, **params})
    except TypeError as exc:
        raise OptionsError(f"diffusion engine: option 'cache' ({spec.kind}): {exc}") from None
