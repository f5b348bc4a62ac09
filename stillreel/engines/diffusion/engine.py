"""The diffusion engine: one loaded video pipeline (image and/or text to video), one request at a time.

``generate`` reads top to bottom as the recipe:
1. capabilities were checked at submit (``stillreel.endpoints.features``); only a start frame the
   model cannot take (or needs and lacks) is refused again here;
2. pick the size (aspect → bucket) and the pipeline calls (duration → frames, long shots → segments);
3. run each call from the previous call's last frame (a text-only model: each shot from its
   prompt), reporting every denoising step (and stopping at the next one once the job is cancelled);
4. stitch the calls into one clip (and one audio track), dropping each continuation's first
   frame, which repeats the frame it started from.
CUDA running out of memory fails the request with ``out_of_memory`` and frees what it held, so
the worker stays usable for the next one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
from PIL import Image as PILImage

from stillreel.engines.base import Audio, Clip, EngineError, GenerationRequest, Progress
from stillreel.engines.diffusion import loading, sizing, speed
from stillreel.engines.diffusion.call import Call, Output
from stillreel.engines.diffusion.families import Family, resolve
from stillreel.engines.diffusion.options import DiffusionOptions, parse


class DiffusionEngine:
    name = "diffusion"

    def __init__(self, pipe, family: Family, options: DiffusionOptions, speed_settings: dict | None = None):
        self.pipe = pipe
        self.driver = loading.driver(family)
        # The loaded VAE and transformer are the authority on the frame quantum and size multiple.
        self.family = replace(
            family, frame_quantum=self.driver.frame_quantum(pipe), size_multiple=self.driver.size_multiple(pipe)
        )
        self.options = options
        self.capabilities = self.family.capabilities()
        self.speed_settings = dict(speed_settings or {})

    @classmethod
    def load(cls, options: dict | DiffusionOptions) -> DiffusionEngine:
        """Load the checkpoint named by ``options`` (``from_pretrained``) and apply the speed settings."""
        options = options if isinstance(options, DiffusionOptions) else parse(options)
        family = resolve(options)
        device = loading.device_for(options)
        dtype = loading.dtype_for(options, device)
        pipe = loading.load(family, options, device, dtype)
        applied = speed.apply(pipe, loading.driver(family).denoisers(pipe), options, device, dtype, family.steps)
        settings = {"device": str(device), "dtype": str(dtype).removeprefix("torch."), **applied}
        return cls(pipe, family, options, settings)

    # -- the recipe ---------------------------------------------------------------------------

    def generate(self, request: GenerationRequest, progress: Progress) -> Clip:
        self._refuse_unsupported(request)
        loading.free_memory()  # whatever a failed previous job left behind is unreferenced by now
        family = self.family

        # From text alone with no aspect ratio: the landscape bucket (the model's own shape).
        shape = request.start_image.shape[1::-1] if request.start_image is not None else family.resolution
        size = sizing.bucket(family.resolution, family.size_multiple, request.aspect, shape)
        # A text-only model cannot continue from a frame: each shot is one call, whatever its length.
        span = family.max_seconds if family.image_to_video else max(request.seconds, family.max_seconds)
        calls = sizing.segments(request.shots, family.fps, family.frame_quantum, span)
        start = sizing.fit(request.start_image, size) if request.start_image is not None else None
        end = sizing.fit(request.end_image, size) if request.end_image is not None else None
        negative = request.negative_prompt if request.negative_prompt is not None else family.negative_prompt
        references = self._references(request)
        progress.log(
            f"{family.name}: {len(request.shots)} shot(s) in {len(calls)} call(s), "
            f"{sizing.total_frames(calls)} frames at {size[0]}x{size[1]}, {family.fps} fps, {family.steps} steps, "
            f"guidance {sizing.guidance_scale(request.guidance, family.guidance):g}"
        )

        outputs: list[Output] = []
        failure = None
        started = time.monotonic()
        try:
            image = start
            for index, segment in enumerate(calls):
                call = Call(
                    prompt=segment.prompt, negative_prompt=negative, image=image,
                    last_image=end if index == len(calls) - 1 else None,
                    width=size[0], height=size[1], frames=segment.frames, fps=family.fps,
                    steps=family.steps, cfg=request.guidance, seed=request.seed + index,
                    references=references,  # every call: the subject stays the same across segments
                )
                output = self.driver.run(self.pipe, family, call, self._on_step(progress, index, len(calls)))
                outputs.append(output)
                # The next call starts where this one ended; a text-only model's next shot starts afresh.
                image = sizing.fit(output.frames[-1], size) if family.image_to_video else None
        except Exception as exc:
            if not loading.is_out_of_memory(exc):
                raise  # Cancelled included: the worker records the job as cancelled
            failure = str(exc).splitlines()[0]
        if failure is not None:
            # Outside the except block the traceback, and the tensors its frames hold, are gone.
            outputs.clear()
            loading.free_memory()
            raise EngineError(
                f"the GPU ran out of memory making {sizing.total_frames(calls)} frames at {size[0]}x{size[1]} "
                f"with {self.options.model} ({failure}); try a shorter duration, or the offload / vae_tiling "
                "options on this model",
                error_type="out_of_memory",
                status=503,
            )
        return self._clip(outputs, size, calls, time.monotonic() - started, request)

    # -- steps ------------------------------------------------------------------------------

    def _refuse_unsupported(self, request: GenerationRequest) -> None:
        # Capabilities are checked at submit (stillreel.endpoints.features), but from the checkpoint
        # metadata the API host reads; the checkpoint loaded here is the worker's (another machine's
        # folder under the same name, or swapped since the request was queued), so submit cannot
        # guarantee it. Without or with a start frame is the one thing a pipeline cannot work
        # around (it would fail deep inside diffusers), so it is checked again here.
        if request.start_image is None and not self.family.text_to_video:
            what = "text-to-video (no start image)"
        elif request.start_image is not None and not self.family.image_to_video:
            what = "a start image"
        else:
            return
        raise EngineError(
            f"{what} is not supported by the diffusion engine's model {self.options.model} ({self.family.name})",
            error_type="feature_not_supported", loc=("start_image",),
        )

    def _references(self, request: GenerationRequest) -> tuple[PILImage.Image, ...]:
        """Reference images and every element's pictures, as given (the pipeline letterboxes them)."""
        if not self.family.reference_images:
            return ()  # refused at submit when the request used them
        images = list(request.reference_images)
        for element in request.elements:
            images += [element.frontal, *element.references]
        return tuple(PILImage.fromarray(np.ascontiguousarray(i[..., :3]), "RGB") for i in images)

    def _on_step(self, progress: Progress, call_index: int, calls: int):
        steps, total = self.family.steps, self.family.steps * calls

        def on_step_end(pipe, step: int, timestep, callback_kwargs: dict) -> dict:
            done = min(total, call_index * steps + step + 1)
            progress.report(done / total, f"step {done}/{total}")  # raises Cancelled once cancelled
            return {}

        return on_step_end

    def _clip(self, outputs: list[Output], size: tuple[int, int], calls: list, seconds: float,
              request: GenerationRequest) -> Clip:
        # Every call after the first starts on the frame the previous one ended on: drop the repeat.
        # (A text-only model's next shot is a cut; its first frame goes too, so that a clip of s
        # seconds has the same frame count on every model.)
        parts = [outputs[0].frames] + [o.frames[1:] for o in outputs[1:]]
        frame_count = sum(len(p) for p in parts)
        # A joint audio-video model always makes a soundtrack; it is kept only when it was asked for.
        audio = self._audio(outputs, frame_count) if request.audio else None
        info = {
            "engine": self.name,
            "model": self.options.model,
            "family": self.family.name,
            "mode": "image-to-video" if request.start_image is not None else "text-to-video",
            "steps": self.family.steps,
            "guidance_scale": round(sizing.guidance_scale(request.guidance, self.family.guidance), 4),
            "calls": len(calls),
            "generate_seconds": round(seconds, 3),
            **self.speed_settings,
        }
        if self.family.reference_images:
            info["references"] = len(request.reference_images) + sum(1 + len(e.references) for e in request.elements)
        return Clip(
            fps=self.family.fps, width=size[0], height=size[1], frame_count=frame_count,
            frames=_frames(parts), audio=audio, info=info,
        )

    def _audio(self, outputs: list[Output], frame_count: int) -> Audio | None:
        if outputs[0].audio is None:
            return None
        rate = outputs[0].audio.sample_rate
        one_frame = round(rate / self.family.fps)  # the audio under each dropped repeat frame
        tracks = [outputs[0].audio.samples] + [o.audio.samples[:, one_frame:] for o in outputs[1:]]
        samples = np.concatenate(tracks, axis=1)
        wanted = round(frame_count / self.family.fps * rate)
        if samples.shape[1] < wanted:
            samples = np.pad(samples, ((0, 0), (0, wanted - samples.shape[1])))
        return Audio(np.ascontiguousarray(samples[:, :wanted], dtype=np.float32), rate)


def _frames(parts: list[np.ndarray]) -> Iterator[np.ndarray]:
    for part in parts:
        yield from part

