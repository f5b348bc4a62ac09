"""``stillreel run | status | result | cancel``: the command line for people (and scripts).

``stillreel run`` talks to a server when ``--server`` (or ``STILLREEL_URL``) is given, uploading
local files for you; otherwise it renders in this process with the chosen engine, no server needed.
Progress goes to stderr; stdout carries only the result (the saved path, or JSON with ``--json``).

Exit codes (stable, for scripts):

| code | meaning |
|---|---|
| 0 | success (for ``cancel``: the cancellation was accepted) |
| 1 | the request failed (engine or server error) |
| 2 | bad command line (unknown option, missing file, malformed --trajectory/--shot) |
| 3 | the input was rejected (fal's 422: invalid field, feature the engine cannot do) |
| 4 | not found (unknown endpoint or request id) |
| 5 | authentication failed (missing, wrong or revoked key) |
| 6 | cannot reach the server |
| 7 | the request was cancelled |
| 8 | not finished yet (``result`` without ``--wait``) |
| 9 | already completed (``cancel`` came too late) |
| 130 | interrupted with Ctrl-C (a remote request is cancelled first) |
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from stillreel.cli_flags import UsageError, build_input
from stillreel.cli_output import Exit, ProgressView, client_errors, err, fail
from stillreel.client import errors as E

DEFAULT_APP = "fal-ai/kling-video"


def _print_result(path: Path, data: dict, as_json: bool) -> None:
    print(json.dumps(data) if as_json else str(path), flush=True)


# --- commands ---------------------------------------------------------------------------------------

Server = typer.Option(None, "--server", "-s", envvar="STILLREEL_URL", help="Server URL (env STILLREEL_URL). Without it, run renders in this process.")
Key = typer.Option(None, "--key", "-k", envvar="STILLREEL_KEY", help="API key KEY_ID:SECRET (env STILLREEL_KEY).")
EndpointOpt = typer.Option(DEFAULT_APP, "--endpoint", help="Endpoint id or owner/app the request belongs to.")
JsonOpt = typer.Option(False, "--json", help="Print JSON on stdout instead of text.")


def run(
    endpoint_id: str = typer.Argument(..., help="e.g. fal-ai/kling-video/v2/master/image-to-video (see `stillreel endpoints`)."),
    image: str = typer.Option(..., "--image", "-i", help="Start image: a local path or an http(s)/data: URL."),
    prompt: Optional[str] = typer.Option(None, "--prompt", "-p", help="What should happen in the video."),
    output: Path = typer.Option(Path("out.mp4"), "--output", "-o", help="Where to save the MP4."),
    tail_image: Optional[str] = typer.Option(None, "--tail-image", help="End frame (path or URL)."),
    duration: Optional[str] = typer.Option(None, "--duration", "-d", help="Seconds, as the endpoint allows (e.g. 5, 10)."),
    aspect_ratio: Optional[str] = typer.Option(None, "--aspect-ratio", help="16:9, 9:16 or 1:1."),
    camera: Optional[str] = typer.Option(None, "--camera", help="down_back, forward_up, right_turn_forward, left_turn_forward."),
    static_mask: Optional[str] = typer.Option(None, "--static-mask", help="Motion brush: area that must stay still."),
    dynamic_mask: list[str] = typer.Option([], "--dynamic-mask", help="Motion brush: area to move (repeat; each with a --trajectory)."),
    trajectory: list[str] = typer.Option([], "--trajectory", help='Path for the matching --dynamic-mask: "x1,y1 x2,y2 ..." (pixels, origin bottom-left).'),
    shot: list[str] = typer.Option([], "--shot", help='Multi-shot: "prompt:seconds" (repeat; instead of --prompt).'),
    negative_prompt: Optional[str] = typer.Option(None, "--negative-prompt"),
    cfg_scale: Optional[float] = typer.Option(None, "--cfg-scale", min=0.0, max=1.0),
    audio: Optional[bool] = typer.Option(None, "--audio/--no-audio", help="Ask for generated audio (endpoints that offer it)."),
    server: Optional[str] = Server,
    key: Optional[str] = Key,
    local: bool = typer.Option(False, "--local", help="Render in this process even if STILLREEL_URL is set."),
    engine: str = typer.Option("motion", "--engine", help="In-process engine: motion, diffusion or module:Class."),
    model: Optional[str] = typer.Option(None, "--model", help="In-process diffusion model (folder or hub id)."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Submit, print the request id and exit (needs a server)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    as_json: bool = JsonOpt,
):
    """Turn a picture into a video: on a server (--server) or right here."""
    remote = bool(server) and not local
    try:
        data = build_input(endpoint_id, image=image, prompt=prompt, tail_image=tail_image, duration=duration,
                           aspect_ratio=aspect_ratio, camera=camera, static_mask=static_mask,
                           dynamic_mask=dynamic_mask, trajectory=trajectory, shot=shot,
                           negative_prompt=negative_prompt, cfg_scale=cfg_scale, audio=audio, inline=not remote)
    except UsageError as exc:
        raise fail(Exit.USAGE, str(exc)) from None
    if remote:
        _run_remote(endpoint_id, data, output, server, key, no_wait=no_wait, quiet=quiet, as_json=as_json)
    elif no_wait:
        raise fail(Exit.USAGE, "--no-wait needs a server (--server or STILLREEL_URL)")
    else:
        from stillreel.cli_local import render

        render(endpoint_id, data, output, engine=engine, model=model, quiet=quiet, as_json=as_json)


def _run_remote(endpoint_id: str, data: dict, output: Path, server: str, key: str | None, *, no_wait: bool,
                quiet: bool, as_json: bool) -> None:
    from stillreel.client import Client

    with Client(server, key) as client, client_errors():
        try:
            handle = client.submit(endpoint_id, data)
        except KeyboardInterrupt:
            # A submit cut short may still have reached the server; there is no id to cancel by.
            raise fail(Exit.INTERRUPTED, "interrupted while submitting; no request id came back, so nothing "
                                         "was cancelled") from None
        if no_wait:
            print(json.dumps({"request_id": handle.request_id}) if as_json else handle.request_id, flush=True)
            return
        if not quiet:
            err.print(f"request {handle.request_id} on {client.url}")
        try:
            with ProgressView(not quiet) as view:
                handle.wait(on_update=view.status)
        except KeyboardInterrupt:
            _cancel_after_interrupt(client, handle)
        _save(handle.result(), output, as_json)


def _cancel_after_interrupt(client, handle) -> None:
    try:
        cancelled = handle.cancel()
    except (E.StillreelError, KeyboardInterrupt) as exc:
        raise fail(Exit.INTERRUPTED, f"interrupted; cancelling request {handle.request_id} failed: {exc}") from None
    if cancelled:
        raise fail(Exit.INTERRUPTED, f"interrupted: cancelled request {handle.request_id} on the server")
    raise fail(Exit.INTERRUPTED, f"interrupted; request {handle.request_id} had already completed "
                                 f"(`stillreel result {handle.request_id} -o FILE` fetches it)")


def _save(result, output: Path, as_json: bool) -> None:
    video = result.video
    if video is None:
        raise fail(Exit.FAILED, f"the result has no video: {json.dumps(result.data)[:300]}")
    video.download(output)
    _print_result(output, {"request_id": result.request_id, "path": str(output), **result.data}, as_json)


def status(
    request_id: str = typer.Argument(..., help="The request id printed by `stillreel run` or a fal client."),
    endpoint: str = EndpointOpt,
    logs: bool = typer.Option(False, "--logs", help="Also print the request's log lines."),
    server: Optional[str] = Server,
    key: Optional[str] = Key,
    as_json: bool = JsonOpt,
):
    """Show where a request is: queued (position), running (percent), or completed (and how)."""
    from stillreel.client import Client

    with Client(server, key) as client, client_errors():
        s = client.status(request_id, endpoint_id=endpoint, logs=logs)
    if as_json:
        print(json.dumps(s.raw), flush=True)
        return
    if s.queued:
        line = f"IN_QUEUE position {s.queue_position}"
    elif s.in_progress:
        line = "IN_PROGRESS" + (f" {s.progress:.0f}%" if s.progress is not None else "")
    elif s.succeeded:
        line = "COMPLETED"
    else:
        line = f"COMPLETED with error [{s.error_type}]: {s.error}"
    print(line, flush=True)
    for entry in s.logs if logs else ():
        print(f"  {entry.timestamp or ''} {entry.level} {entry.message}", flush=True)


def result(
    request_id: str = typer.Argument(...),
    output: Path = typer.Option(Path("out.mp4"), "--output", "-o"),
    endpoint: str = EndpointOpt,
    wait: bool = typer.Option(False, "--wait", "-w", help="Wait for the request to finish (with a progress bar)."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    server: Optional[str] = Server,
    key: Optional[str] = Key,
    as_json: bool = JsonOpt,
):
    """Save the video of a finished request (exit 8 if it is not finished and --wait is not given)."""
    from stillreel.client import Client

    with Client(server, key) as client, client_errors():
        handle = client.handle(request_id, endpoint)
        if wait:
            try:
                with ProgressView(not quiet) as view:
                    handle.wait(on_update=view.status)
            except KeyboardInterrupt:
                # The request belongs to whoever started it: stop waiting, leave it running.
                raise fail(Exit.INTERRUPTED, f"interrupted; request {request_id} was left as it is") from None
        else:
            s = handle.status()
            if not s.completed:
                where = f"position {s.queue_position}" if s.queued else f"{s.progress or 0:.0f}%"
                raise fail(Exit.NOT_READY, f"request {request_id} is {s.state} ({where}); use --wait or try later")
        _save(handle.result(), output, as_json)


def cancel(
    request_id: str = typer.Argument(...),
    endpoint: str = EndpointOpt,
    server: Optional[str] = Server,
    key: Optional[str] = Key,
):
    """Cancel a queued or running request (exit 9 if it had already completed)."""
    from stillreel.client import Client

    with Client(server, key) as client, client_errors():
        if not client.cancel(request_id, endpoint_id=endpoint):
            raise fail(Exit.ALREADY_COMPLETED, f"request {request_id} had already completed")
    print(f"cancellation requested for {request_id}", flush=True)

