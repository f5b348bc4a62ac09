"""Loading a checkpoint once per worker: dtype, device, offload; and freeing memory after failures."""

from __future__ import annotations

import gc
import importlib
from types import ModuleType

import torch

from stillreel.engines.diffusion.families import Family
from stillreel.engines.diffusion.options import DiffusionOptions, OptionsError

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def driver(family: Family) -> ModuleType:
    """The module that drives this family's pipeline (``wan``, ``wan_t2v``, ``vace``, ``ltx`` or ``ltx2``)."""
    return importlib.import_module(f"stillreel.engines.diffusion.{family.driver}")


def device_for(options: DiffusionOptions) -> torch.device:
    if options.device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(options.device)
    except RuntimeError as exc:
        raise OptionsError(f"diffusion engine: option 'device' = {options.device!r} is invalid: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise OptionsError(
            f"diffusion engine: device {options.device!r} was asked for but CUDA is not available "
            f"(torch {torch.__version__}); install a CUDA build of torch or set device = 'cpu'"
        )
    return device


def dtype_for(options: DiffusionOptions, device: torch.device) -> torch.dtype:
    if options.dtype == "auto":
        # bfloat16 is what the model cards run on GPUs; CPUs are much faster in float32.
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return _DTYPES[options.dtype]


def load(family: Family, options: DiffusionOptions, device: torch.device, dtype: torch.dtype):
    """``from_pretrained`` through the family's driver, then placed on ``device`` (or offloaded)."""
    if options.offload != "none" and device.type != "cuda":
        raise OptionsError(
            f"diffusion engine: offload = {options.offload!r} moves weights between the CPU and a GPU; "
            f"the device here is {device}"
        )
    pipe = driver(family).load(options.model, dtype)
    pipe.set_progress_bar_config(disable=True)
    if options.offload == "none":
        pipe.to(device)
    elif options.offload == "model":  # whole components move in and out: small slowdown
        pipe.enable_model_cpu_offload(device=device)
    elif options.offload == "sequential":  # layer by layer: lowest memory, slowest
        pipe.enable_sequential_cpu_offload(device=device)
    else:  # group: blocks stream in on a side CUDA stream, overlapping the transfers with compute
        pipe.enable_group_offload(
            onload_device=device, offload_device=torch.device("cpu"), offload_type="block_level",
            num_blocks_per_group=1, use_stream=True,
        )
    return pipe


def free_memory() -> None:
    """Drop unreferenced tensors and hand cached CUDA blocks back, so the next job starts clean.

    On a CPU-only machine there is no device cache to return and the collection would only cost time.
    """
    if torch.cuda.is_available():
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def is_out_of_memory(exc: BaseException) -> bool:
    # Some kernels (cuDNN, cuBLAS workspaces) report CUDA OOM as a plain RuntimeError.
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )
