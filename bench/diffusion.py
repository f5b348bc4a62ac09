"""Diffusion engine speed: stillreel's fast settings against the plain diffusers call, one GPU.

Full-size architectures are built from their published configs with random weights (no download;
the time a step takes does not depend on the weights' values) and one 5 s clip is timed end to
end — text encoding, denoising, VAE decoding — for:

- Wan2.2-TI2V-5B at 1280×704, 121 frames (24 fps), 50 steps, guidance 5 (its model card);
- Wan2.1-I2V-14B-480P at 832×480, 81 frames (16 fps), 40 steps, guidance 5.

Lines per model, all from the same pipeline object and seed:
  plain     the model card's call: bf16 transformer, fp32 VAE, pipe.to("cuda"), default attention;
  lossless  stillreel's engine at the same steps and guidance: best attention backend + regional
            torch.compile (warm-up reported apart); the output difference to `plain` is reported;
  cache     `lossless` + a step cache (lossy; random weights make its hit rate unrepresentative);
  distilled stillreel at 4 steps, guidance off: the step-distilled recipe (lightx2v-style LoRAs) —
            a quality trade, not a speed-up at equal quality, hence its own line.

``--steps N`` times N steps and projects the card's step count from the measured per-step time
(fixed costs + steps × per-step): full runs of the 14B model exceed ten minutes per call.
``--smoke`` runs a tiny checkpoint through the engine on CUDA (load, compile, generate, encode).
``--tiny`` runs the whole comparison on tiny random models (CUDA where there is one, else the CPU):
a dry run of this script. ``bench/gpu.sh`` runs the smoke test and the Wan2.2-TI2V-5B lines as one
time-boxed job on a GPU machine and writes JSON (see BENCHMARKS.md).

    python bench/diffusion.py --smoke
    python bench/diffusion.py --model wan2.2-ti2v-5b --steps 10 --json out.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

MODELS = {  # name: (family, width, height, frames, fps, card steps, card guidance, flow shift)
    "wan2.2-ti2v-5b": ("wan2.2-ti2v-5b", 1280, 704, 121, 24, 50, 5.0, 5.0),
    "wan2.1-i2v-14b": ("wan2.1-i2v", 832, 480, 81, 16, 40, 5.0, 3.0),
}
NEGATIVE = "blurry, low quality, static"
PROMPT = "a red fox walks through fresh snow, camera slowly tracking, cinematic light"


# -- building the pipelines -----------------------------------------------------------------------


def _umt5_xxl(device, dtype, vocab_size: int | None = None):
    from transformers import UMT5Config, UMT5EncoderModel

    config = UMT5Config(vocab_size=vocab_size or 256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24,
                        num_heads=64, relative_attention_num_buckets=32, relative_attention_max_distance=128,
                        feed_forward_proj="gated-gelu", dropout_rate=0.0)
    return _on(device, dtype, lambda: UMT5EncoderModel(config).eval())


def _on(device, dtype, build):
    """Build a module directly on ``device`` in ``dtype``: a 14B model never touches the CPU.

    As ``from_pretrained(torch_dtype=bf16)`` does for the model card, the modules a model names in
    ``_keep_in_fp32_modules`` (Wan: rope, time embedder, norms, scale-shift tables; T5: ``wo``) stay in
    float32 — a blanket ``.to(bf16)`` would time (and compare) a model nobody runs.
    """
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            return keep_fp32_modules(build().to(dtype))
    finally:
        torch.set_default_dtype(previous)


def keep_fp32_modules(model):
    keep = set(getattr(model, "_keep_in_fp32_modules", None) or ())
    if keep:
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if tensor.is_floating_point() and keep.intersection(name.split(".")):
                tensor.data = tensor.data.float()
    return model


def full_pipeline(name: str, device: str):
    """The published architecture of ``name`` with random weights, as the model card loads it."""
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanImageToVideoPipeline, WanTransformer3DModel
    from tiny_pipelines import t5_tokenizer
    from transformers import CLIPImageProcessorPil, CLIPVisionConfig, CLIPVisionModel

    family, *_, shift = MODELS[name]
    bf16, fp32 = torch.bfloat16, torch.float32
    tokenizer = t5_tokenizer()  # token ids of a small vocabulary are valid ids of the real one
    common = dict(patch_size=(1, 2, 2), attention_head_dim=128, cross_attn_norm=True, eps=1e-6, freq_dim=256,
                  qk_norm="rms_norm_across_heads", rope_max_seq_len=1024, text_dim=4096)
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                        num_train_timesteps=1000, flow_shift=shift)
    if name == "wan2.2-ti2v-5b":
        transformer = _on(device, bf16, lambda: WanTransformer3DModel(
            num_attention_heads=24, num_layers=30, ffn_dim=14336, in_channels=48, out_channels=48, **common))
        vae = _on(device, fp32, lambda: AutoencoderKLWan(
            base_dim=160, decoder_base_dim=256, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
            temperal_downsample=[False, True, True], is_residual=True, in_channels=12, out_channels=12,
            patch_size=2, scale_factor_spatial=16, scale_factor_temporal=4,
            latents_mean=[0.0] * 48, latents_std=[1.0] * 48))
        return WanImageToVideoPipeline(
            tokenizer=tokenizer, text_encoder=_umt5_xxl(device, bf16), vae=vae, scheduler=scheduler,
            transformer=transformer, transformer_2=None, image_encoder=None, image_processor=None,
            expand_timesteps=True), family
    transformer = _on(device, bf16, lambda: WanTransformer3DModel(
        num_attention_heads=40, num_layers=40, ffn_dim=13824, in_channels=36, out_channels=16, image_dim=1280,
        added_kv_proj_dim=5120, **common))
    vae = _on(device, fp32, lambda: AutoencoderKLWan())  # the Wan2.1 VAE is diffusers' default config
    image_encoder = _on(device, fp32, lambda: CLIPVisionModel(CLIPVisionConfig(
        hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
        image_size=224, patch_size=14, projection_dim=1024, hidden_act="gelu")).eval())
    return WanImageToVideoPipeline(
        tokenizer=tokenizer, text_encoder=_umt5_xxl(device, bf16), vae=vae, scheduler=scheduler,
        transformer=transformer, image_encoder=image_encoder,
        image_processor=CLIPImageProcessorPil(size={"shortest_edge": 224}, crop_size=224)), family


def tiny_pipeline(name: str, device: str):
    import tiny_pipelines as tiny

    pipe = tiny.wan22_ti2v() if name == "wan2.2-ti2v-5b" else tiny.wan21()
    if name == "wan2.2-ti2v-5b":  # saved as WanPipeline; the engine drives the I2V class
        from diffusers import WanImageToVideoPipeline

        pipe = WanImageToVideoPipeline(**pipe.components, image_encoder=None, image_processor=None,
                                       expand_timesteps=True)  # config, not a component
    return pipe.to(device), MODELS[name][0]


# -- timing ---------------------------------------------------------------------------------------


@dataclass
class Run:
    label: str
    steps: int
    seconds: float
    step_seconds: float  # median time of one denoising step
    peak_gib: float
    frames: np.ndarray | None = field(default=None, repr=False)
    note: str = ""
    extra: dict = field(default_factory=dict)  # figures that go into the JSON line as they are

    def projected(self, steps: int) -> float:
        """The clip's time at ``steps``: fixed costs (encode, decode) + steps × per-step."""
        return self.seconds + (steps - self.steps) * self.step_seconds


class Runs(list):
    """The lines timed so far, and the lines that failed (``errors``: label and message)."""

    errors: list[dict]


class StepClock:
    """Timestamps at each step end (device synchronised), usable as a callback or a Progress."""

    cancelled = False

    def __init__(self, device: str):
        self.device, self.marks = device, []

    def tick(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()
        self.marks.append(time.perf_counter())

    def callback(self, pipe, step, timestep, kwargs):
        self.tick()
        return {}

    def report(self, fraction, message=None):
        self.tick()

    def log(self, message, level="INFO"):
        pass

    def per_step(self) -> float:
        gaps = np.diff(self.marks)
        return float(statistics.median(gaps)) if len(gaps) else 0.0


def measure(label: str, steps: int, device: str, work) -> Run:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    clock = StepClock(device)
    started = time.perf_counter()
    frames = work(clock)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else 0.0
    return Run(label, steps, seconds, clock.per_step(), peak, frames)


def bench_model(name: str, args, on_run=lambda runs: None) -> list[Run]:
    from PIL import Image

    from stillreel.engines.base import GenerationRequest, Shot
    from stillreel.engines.diffusion.engine import DiffusionEngine
    from stillreel.engines.diffusion.families import resolve
    from stillreel.engines.diffusion.loading import driver
    from stillreel.engines.diffusion.options import parse
    from stillreel.engines.diffusion.speed import apply

    family, width, height, frames, fps, card_steps, guidance, _ = MODELS[name]
    if args.tiny:
        width, height, frames, fps = 64, 32, 9, 8
    steps = args.steps or card_steps
    device = args.device
    build = tiny_pipeline if args.tiny else full_pipeline
    pipe, family = build(name, device)
    pipe.set_progress_bar_config(disable=True)
    image = np.asarray(Image.fromarray(
        np.random.default_rng(0).integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
    ).resize((width, height), Image.Resampling.BICUBIC))
    seconds = (frames - 1) // fps

    def plain(clock, n=steps, latent=False):
        out = pipe(image=Image.fromarray(image), prompt=PROMPT, negative_prompt=NEGATIVE, height=height,
                   width=width, num_frames=frames, num_inference_steps=n, guidance_scale=guidance,
                   generator=torch.Generator("cpu").manual_seed(0),
                   output_type="latent" if latent else "np",
                   callback_on_step_end=clock.callback)
        if latent:
            return None
        return (out.frames[0] * 255).round().clip(0, 255).astype(np.uint8)

    runs = Runs()
    print(f"\n{name}: {width}x{height}, {frames} frames, {steps} steps (card: {card_steps}), guidance {guidance}")
    # Warm-ups skip the VAE decode (output_type="latent"): at 1280×704×121 in fp32 it is a large share
    # of a run, and it needs no warming. The engine drives this same pipeline object at the same shapes,
    # so a 1-step plain call after apply() compiles the blocks the timed engine run then uses.
    measure("warm-up", 1, device, lambda c: plain(c, 1, latent=True))
    runs.append(measure("plain diffusers", steps, device, plain))
    _print(runs[-1], card_steps)
    on_run(runs)

    def engine_run(label, extra, n=steps, cfg=0.5, note=""):
        """One stillreel line; a failure (say, a compile error on this GPU) is recorded, not fatal."""
        try:
            return _engine_run(label, extra, n, cfg, note)
        except Exception as exc:  # noqa: BLE001 — the other lines still run and get saved
            import traceback

            traceback.print_exc()
            errors.append({"label": label, "error": f"{type(exc).__name__}: {exc}"[:500]})
            on_run(runs)
            return None

    def _engine_run(label, extra, n, cfg, note):
        options = parse({"model": f"random:{name}", "family": family, "steps": n, "guidance": guidance,
                         "fps": fps, "resolution": f"{width}x{height}", "device": device, **extra})
        applied = apply(pipe, driver(resolve(options)).denoisers(pipe), options, torch.device(device),
                        torch.bfloat16 if device == "cuda" else torch.float32, n)
        engine = DiffusionEngine(pipe, resolve(options), options, applied)
        request = GenerationRequest(start_image=image, shots=(Shot(PROMPT, seconds),), seconds=seconds,
                                    guidance=cfg, negative_prompt=NEGATIVE, seed=0)
        if frames != engine.family.frame_quantum * round(seconds * fps / engine.family.frame_quantum) + 1:
            raise SystemExit(f"{name}: {seconds} s at {fps} fps is not {frames} frames")
        warm = measure("compile warm-up", 1, device, lambda c: plain(c, 1, latent=True))
        run = measure(label, n, device, lambda c: np.stack(list(engine.generate(request, c).frames)))
        run.note = f"{note}warm-up {warm.seconds:.1f} s; {json.dumps(applied)}"
        if "cache" in extra:  # the settings stay on the shared pipeline: take the cache off again
            for model in driver(resolve(options)).denoisers(pipe):
                model.disable_cache()
        return run

    errors = runs.errors = []
    fast = {"attention": args.attention, "compile": device == "cuda" and not args.no_compile}
    lossless = engine_run("stillreel lossless", fast)
    if lossless is None:
        return runs
    runs.append(lossless)
    diff = np.abs(runs[-1].frames.astype(np.int16) - runs[0].frames.astype(np.int16))
    runs[-1].extra = {"diff_vs_plain_mean": round(float(diff.mean()), 4), "diff_vs_plain_max": int(diff.max())}
    runs[-1].note = (f"vs plain: mean |Δ| {diff.mean():.3f}, max {int(diff.max())} (uint8 levels); "
                     + runs[-1].note)
    _print(runs[-1], card_steps, runs[0])
    on_run(runs)
    # The distilled line reuses the lossless compiled graphs; the cache line recompiles (graph breaks at
    # its hooks) and goes last, the first to be cut when a time-boxed run runs out of time.
    distilled = engine_run("stillreel 4-step distilled (CFG off)", fast, n=4, cfg=0.0,
                           note="a quality trade (needs distilled weights), not an equal-quality speed-up; ")
    if distilled is not None:
        runs.append(distilled)
        _print(runs[-1], 4, runs[0], baseline_steps=card_steps)
        on_run(runs)
    if args.cache:
        cached = engine_run(f"stillreel + {args.cache} cache", {**fast, "cache": args.cache},
                            note="lossy; random weights: hit rate not representative; ")
        if cached is not None:
            runs.append(cached)
            _print(runs[-1], card_steps, runs[0])
            on_run(runs)
    return runs


def _print(run: Run, steps: int, baseline: Run | None = None, baseline_steps: int | None = None) -> None:
    clip = run.projected(steps)
    text = (f"  {run.label:40s} {run.seconds:8.1f} s at {run.steps} steps → {clip:8.1f} s per clip at {steps} "
            f"steps  ({run.step_seconds:.3f} s/step, peak {run.peak_gib:.1f} GiB)")
    if baseline is not None:
        base = baseline.projected(baseline_steps or steps)
        text += f"  speed-up ×{base / clip:.2f}"
    print(text, flush=True)
    if run.note:
        print(f"  {'':40s} {run.note}", flush=True)


# -- the GPU smoke test ---------------------------------------------------------------------------


def smoke() -> None:
    """A tiny checkpoint through the real engine on CUDA: from_pretrained, bf16, attention, compile."""
    import tiny_pipelines as tiny

    from stillreel.engines.base import GenerationRequest, NullProgress, Shot
    from stillreel.engines.diffusion import create
    from stillreel.media.encode import encode
    from videocheck import probe

    with tempfile.TemporaryDirectory() as folder:
        for name in (tiny.WAN21_FLF2V, tiny.LTX2):
            path = tiny.build(name, Path(folder))
            engine = create({"model": str(path), "device": "cuda", "compile": True})
            image = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
            request = GenerationRequest(start_image=image, shots=(Shot("a cat", 2),), seconds=2,
                                        end_image=image[::-1].copy(), audio=engine.capabilities.audio)
            clip = engine.generate(request, NullProgress())
            info = probe(encode(clip, Path(folder) / f"{name}.mp4")["path"])
            print(f"smoke {name}: {engine.speed_settings} → {info['frames']} frames {info['width']}x"
                  f"{info['height']}, audio {info['audio']}, peak {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
            assert info["frames"] == clip.frame_count and (info["audio"] is not None) == engine.capabilities.audio
    print("smoke OK on", torch.cuda.get_device_name())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--model", choices=[*MODELS, "all"], default="all")
    parser.add_argument("--steps", type=int, help="denoising steps to time (default: the model card's)")
    parser.add_argument("--attention", default="auto", help="stillreel's attention backend (default: auto)")
    parser.add_argument("--cache", help="also time a step cache: first_block, taylorseer, pab")
    parser.add_argument("--no-compile", action="store_true", help="stillreel without torch.compile")
    parser.add_argument("--smoke", action="store_true", help="only the GPU smoke test (tiny models)")
    parser.add_argument("--tiny", action="store_true", help="CPU dry run on tiny random models")
    parser.add_argument("--device", help="cuda (default), or with --tiny: cuda where there is one, else cpu")
    parser.add_argument("--no-smoke", action="store_true", help="skip the smoke test before the timings")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    if args.device is None:
        args.device = "cuda" if not args.tiny or torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"CUDA is not available (torch {torch.__version__}): this benchmark times a GPU. "
                         "Run it on a machine with an NVIDIA GPU and a CUDA build of torch, or use --tiny "
                         "for a CPU dry run of the script itself.")
    if args.smoke:
        return smoke()
    if args.device == "cuda":
        print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}")
        if not args.no_smoke:
            smoke()
    results = {}

    def save(name: str, runs: list[Run]) -> None:
        """Rewrite the JSON after every line, so a run cut by its deadline keeps the lines it finished."""
        results[name] = speed_lines(name, runs, args)
        if args.json:
            device = torch.cuda.get_device_name() if args.device == "cuda" else f"{args.device} (dry run)"
            doc = {"device": device, "torch": torch.__version__, "tiny": args.tiny, "results": results}
            args.json.write_text(json.dumps(doc, indent=2))

    for name in MODELS if args.model == "all" else [args.model]:
        bench_model(name, args, on_run=lambda runs, name=name: save(name, runs))
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def speed_lines(name: str, runs: list[Run], args) -> dict:
    """One model's figures; every line's ``speedup`` is plain's clip time over its own, both projected
    to the card's step count (the distilled line at its own 4 steps)."""
    _, width, height, frames, fps, card_steps, guidance, _ = MODELS[name]
    if args.tiny:
        width, height, frames, fps = 64, 32, 9, 8
    base = runs[0].projected(card_steps)
    lines = []
    for r in runs:
        steps = r.steps if r.label.startswith("stillreel 4-step") else card_steps
        clip = r.projected(steps)
        lines.append({"label": r.label, "steps": r.steps, "seconds": round(r.seconds, 3),
                      "step_seconds": round(r.step_seconds, 4), "projected_steps": steps,
                      "projected_seconds": round(clip, 2), "speedup": round(base / clip, 3) if clip > 0 else None,
                      "peak_gib": round(r.peak_gib, 2), **r.extra, "note": r.note})
    return {"width": width, "height": height, "frames": frames, "fps": fps, "card_steps": card_steps,
            "guidance": guidance, "timed_steps": runs[0].steps, "lines": lines,
            "errors": list(getattr(runs, "errors", []))}


if __name__ == "__main__":
    main()
