"""``stillreel run`` without a server: validate, fetch, generate and encode in this process.

The same path a worker takes (endpoint plan → ``Endpoint.admit`` → ``jobs.child.render``), minus
the queue. Local files arrive here as data URIs; http(s) inputs may be on a private network
(the user's own machine is asking, so the server's SSRF guard does not apply).
"""

from __future__ import annotations

import json
from pathlib import Path

from stillreel.cli_output import Exit, LocalProgress, ProgressView, err, fail


def render(endpoint_id: str, data: dict, output: Path, *, engine: str, model: str | None, quiet: bool,
           as_json: bool) -> None:
    from stillreel import engines
    from stillreel.config import Limits
    from stillreel.endpoints.registry import ENDPOINTS, InputError, find
    from stillreel.engines.base import Cancelled, EngineError
    from stillreel.jobs.child import render as render_job
    from stillreel.media.fetch import Fetcher

    endpoint = find(endpoint_id)
    if endpoint is None:
        raise fail(Exit.NOT_FOUND, f"unknown endpoint {endpoint_id}; known: {', '.join(ENDPOINTS)}")
    try:
        plan = endpoint.plan(data)
    except InputError as exc:
        raise fail(Exit.INVALID_INPUT, exc.failure().describe()) from None

    spec = engines.EngineSpec(engine, {"model": model} if model else {})
    try:
        caps = engines.capabilities(spec)
    except (ValueError, ImportError, AttributeError) as exc:
        raise fail(Exit.USAGE, f"--engine {engine}: {exc}") from None
    try:
        plan = endpoint.admit(plan, caps, f"{engine} engine")
    except InputError as exc:
        raise fail(Exit.INVALID_INPUT, exc.failure().describe()) from None

    try:
        with ProgressView(not quiet) as view:
            view.bar.update(view.task, description=f"loading the {engine} engine")
            generator = engines.create(spec)
            view.running_at(0.0)
            with Fetcher(None, Limits(allow_private_urls=True)) as fetcher:
                facts = render_job(plan, generator, fetcher, output, LocalProgress(view))
            view.bar.update(view.task, completed=100, description="done")
    except KeyboardInterrupt:
        raise fail(Exit.INTERRUPTED, "interrupted; nothing was saved") from None
    except EngineError as exc:
        failure = exc.failure(endpoint.detail(exc))  # located under this endpoint's fal fields
        code = Exit.INVALID_INPUT if failure.status == 422 else Exit.FAILED
        raise fail(code, f"{failure.describe()} [{failure.error_type}]") from None
    except Cancelled:
        raise fail(Exit.CANCELLED, "the engine stopped: cancelled") from None

    if as_json:
        video = {"url": output.resolve().as_uri(), "content_type": "video/mp4", "file_name": output.name,
                 "file_size": facts.get("bytes")}
        print(json.dumps({"request_id": None, "path": str(output), "video": video, "facts": _jsonable(facts)}),
              flush=True)
    else:
        if not quiet:
            err.print(f"{facts.get('width')}x{facts.get('height')}, {facts.get('frames')} frames at "
                      f"{facts.get('fps')} fps → {output}")
        print(str(output), flush=True)


def _jsonable(facts: dict) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in facts.items()
            if isinstance(v, (str, int, float, bool, type(None), Path))}
