"""The ``stillreel`` command: serve, worker, keys, endpoints (and run/status/result/cancel)."""

from __future__ import annotations

import ipaddress
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from stillreel.config import MiB, Limits, Settings, load_config_file
from stillreel.engines import EngineSpec

app = typer.Typer(help="stillreel: fal's Kling image-to-video API on your own machine.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys (KEY_ID:SECRET, stored hashed).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
console = Console(stderr=True)

DataDir = typer.Option(Path(".stillreel"), "--data-dir", envvar="STILLREEL_DATA_DIR", help="Folder for the SQLite database and stored files.")
DatabaseUrl = typer.Option(None, "--database-url", envvar="STILLREEL_DATABASE_URL", help="postgresql://… for a shared queue (default: SQLite in --data-dir).")
StorageUrl = typer.Option(None, "--storage-url", envvar="STILLREEL_STORAGE_URL", help="s3://bucket/prefix?endpoint=… (default: files in --data-dir).")
Engine = typer.Option("motion", "--engine", envvar="STILLREEL_ENGINE", help="motion (CPU, no weights), diffusion, or package.module:Class.")
Model = typer.Option(None, "--model", envvar="STILLREEL_MODEL", help="Diffusion model: a local folder or a hub id.")
ConfigFile = typer.Option(None, "--config", help="stillreel.toml binding endpoints to engines and models.")
EngineOption = typer.Option([], "--engine-option", "-O", help="KEY=VALUE passed to the engine (repeatable), e.g. -O steps=30 -O dtype=bfloat16.")
Retention = typer.Option(None, "--retention", min=0.0, help="Remove finished requests and stored files older than DAYS (fractions allowed), swept in the background.")


def _retention_s(days: float | None) -> float | None:
    return days * 86400 if days else None


def _option_value(text: str):
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def _engine_options(pairs: list[str]) -> dict:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--engine-option")
        options[key.strip()] = _option_value(value.strip())
    return options


def _settings(
    data_dir: Path, database_url: str | None, storage_url: str | None, engine: str, model: str | None,
    config: Path | None, engine_option: list[str] = (), **extra,
) -> Settings:
    options = {**({"model": model} if model else {}), **_engine_options(list(engine_option))}
    spec = EngineSpec(engine, options)
    bindings = {}
    if config is not None:
        if not config.exists():
            raise typer.BadParameter(f"{config} does not exist", param_hint="--config")
        default, bindings = load_config_file(config)
        spec = default or spec
    return Settings(data_dir=data_dir, database_url=database_url, storage_url=storage_url, engine=spec,
                    bindings=bindings, **extra)


def _logging(verbose: bool) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        handlers=[RichHandler(console=console, show_path=False)])


def _delays(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise typer.BadParameter("expected numbers separated by commas", param_hint="--webhook-backoff") from None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", envvar="STILLREEL_HOST"),
    port: int = typer.Option(8000, envvar="STILLREEL_PORT"),
    data_dir: Path = DataDir,
    workers: int = typer.Option(1, "--workers", min=0, help="Workers in this process (0: the API only)."),
    database_url: Optional[str] = DatabaseUrl,
    storage_url: Optional[str] = StorageUrl,
    public_url: Optional[str] = typer.Option(None, "--public-url", envvar="STILLREEL_PUBLIC_URL", help="Base URL clients reach this server at (default: each request's Host)."),
    no_auth: bool = typer.Option(False, "--no-auth", help="Accept requests without a key (loopback hosts only)."),
    engine: str = Engine,
    model: Optional[str] = Model,
    config: Optional[Path] = ConfigFile,
    engine_option: list[str] = EngineOption,
    allow_private_urls: bool = typer.Option(False, "--allow-private-urls", help="Let inputs be fetched from, and webhooks sent to, loopback/private addresses."),
    max_queue: Optional[int] = typer.Option(None, "--max-queue", help="Default fal_max_queue_length."),
    max_input_mb: float = typer.Option(50, "--max-input-mb", help="Largest input file (image, mask) fetched or inlined."),
    max_upload_mb: float = typer.Option(2048, "--max-upload-mb", help="Largest file accepted by the upload routes."),
    max_image_megapixels: float = typer.Option(40, "--max-image-megapixels", help="Largest decoded input image."),
    lease_seconds: float = typer.Option(30.0, "--lease-seconds", help="How long a silent worker keeps a request."),
    cancel_grace: float = typer.Option(10.0, "--cancel-grace", help="Seconds a cancelled generation gets to stop before it is killed."),
    webhook_backoff: Optional[str] = typer.Option(None, "--webhook-backoff", help="Comma-separated retry delays in seconds (default: 10 attempts over ~2 h)."),
    faults: Optional[str] = typer.Option(None, "--faults", help="ROUTE=RATE,…,generation=RATE,queue_delay=S,seed=N: edge failures (429, nginx 502/503/504), runner errors, a slow queue."),
    retention: Optional[float] = Retention,
    forwarded_allow_ips: Optional[str] = typer.Option(None, "--forwarded-allow-ips", envvar="STILLREEL_FORWARDED_ALLOW_IPS", help="Comma-separated proxy addresses/networks (or *) whose X-Forwarded-Proto/-Host are believed (default: nobody's)."),
    max_header_kb: int = typer.Option(64, "--max-header-kb", help="Largest request line + headers."),
    header_timeout: float = typer.Option(30.0, "--header-timeout", help="Seconds a connection gets to send a request's headers."),
    body_timeout: float = typer.Option(60.0, "--body-timeout", help="Seconds a JSON request body gets to arrive whole."),
    keep_alive: int = typer.Option(5, "--keep-alive", help="Seconds an idle keep-alive connection stays open."),
    max_streams_per_key: int = typer.Option(100, "--max-streams-per-key", min=1, help="Concurrent status streams (SSE) per API key."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
):
    """Run the API (and workers) on one port: fal's run, queue, storage routes and the playground."""
    import uvicorn

    from stillreel.api.app import create_app

    if no_auth and not _is_loopback(host):
        console.print(f"[red]--no-auth is refused on {host}: anyone who reaches it could use it. Bind 127.0.0.1 or use keys.")
        raise typer.Exit(2)
    _logging(verbose)
    settings = _settings(
        data_dir, database_url, storage_url, engine, model, config, engine_option, host=host, port=port,
        public_url=public_url, auth=not no_auth, workers=workers, default_max_queue=max_queue,
        limits=Limits(allow_private_urls=allow_private_urls, max_input_bytes=int(max_input_mb * MiB),
                      max_upload_bytes=int(max_upload_mb * MiB), max_image_pixels=int(max_image_megapixels * 1e6),
                      body_timeout_s=body_timeout, max_header_bytes=max_header_kb * 1024, keep_alive_s=keep_alive,
                      max_streams_per_key=max_streams_per_key),
        forwarded_allow_ips=tuple(p.strip() for p in (forwarded_allow_ips or "").split(",") if p.strip()),
        lease_s=lease_seconds, cancel_grace_s=cancel_grace, retention_s=_retention_s(retention),
        **({"webhook_backoff_s": _delays(webhook_backoff)} if webhook_backoff else {}),
    )
    try:
        app_ = create_app(settings)
    except Exception as exc:
        console.print(f"[red]cannot start: {exc}")
        raise typer.Exit(1) from None
    keys = app_.state.services.keys
    if settings.auth and keys.count_active() == 0:
        key = keys.create("first key")
        console.print("[bold]A new API key was created for this data folder. It is shown once; keep it:")
        print(key, flush=True)
    url = public_url or f"http://{host}:{port}"
    console.print(f"stillreel {'(no auth) ' if no_auth else ''}on {url} · engine: {settings.engine.name} · "
                  f"data: {data_dir} · playground: {url}/")
    if faults:
        from stillreel.api.faults import FaultMiddleware, FaultSpec
        from stillreel.twin.server import route_name

        try:
            app_ = FaultMiddleware(app_, FaultSpec.parse(faults), route_name)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--faults") from None
    from stillreel.api.serving import uvicorn_options

    uvicorn.run(app_, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5,
                **uvicorn_options(settings, header_timeout))


@app.command(context_settings={"allow_interspersed_args": False})
def twin(
    command: Optional[list[str]] = typer.Argument(None, help="The command to run against the twin (after --)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Keep data here (default: a temporary folder, removed after)."),
    engine: str = typer.Option("motion", "--engine"),
    engine_option: list[str] = EngineOption,
    workers: int = typer.Option(1, "--workers", min=0),
    auth: bool = typer.Option(False, "--auth", help="Require a key (one is created and put in FAL_KEY)."),
    faults: Optional[str] = typer.Option(None, "--faults", help="ROUTE=RATE,…,generation=RATE,queue_delay=S,seed=N: edge failures (429, nginx 502/503/504), runner errors, a slow queue."),
    retention: Optional[float] = Retention,
    print_env: bool = typer.Option(False, "--print-env", help="Print the environment (export lines) and serve until interrupted."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
):
    """Run COMMAND against a fresh embedded stillreel: unmodified fal clients reach it, no code change."""
    import os
    import shlex
    import subprocess
    import tempfile

    from stillreel.api.app import create_app
    from stillreel.api.faults import FaultMiddleware, FaultSpec
    from stillreel.twin.server import EmbeddedServer, client_env, route_name, summary

    if not command and not print_env:
        console.print("[red]usage: stillreel twin [OPTIONS] -- COMMAND [ARGS...]  (or --print-env)")
        raise typer.Exit(2)
    try:
        fault_spec = FaultSpec.parse(faults)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--faults") from None
    if verbose:
        _logging(verbose)
    temp = tempfile.TemporaryDirectory(prefix="stillreel-twin-") if data_dir is None else None
    folder = Path(temp.name) if temp else data_dir
    settings = _settings(folder, None, None, engine, None, None, engine_option, auth=auth, workers=workers,
                         limits=Limits(allow_private_urls=True), retention_s=_retention_s(retention))
    app_ = create_app(settings)
    key = app_.state.services.keys.create("twin") if auth else None
    faulty = FaultMiddleware(app_, fault_spec, route_name)
    server = EmbeddedServer(faulty)
    server.start()
    env = client_env(server.url, key)
    status = 0
    try:
        if print_env:
            for name, value in env.items():
                print(f"export {name}={shlex.quote(value)}", flush=True)  # a shell reads these
        if command:
            try:
                status = subprocess.call(command, env={**os.environ, **env})
            except FileNotFoundError:
                console.print(f"[red]stillreel twin: command not found: {command[0]}")
                status = 127
        else:
            signal.signal(signal.SIGTERM, signal.default_int_handler)  # serve until Ctrl-C / SIGTERM
            threading.Event().wait()
    except KeyboardInterrupt:
        status = 130
    finally:
        server.stop()
        print(summary(server.counter.counts, faulty.injected), file=sys.stderr, flush=True)
        if temp:
            temp.cleanup()
    raise typer.Exit(status)


@app.command()
def worker(
    data_dir: Path = DataDir,
    database_url: Optional[str] = DatabaseUrl,
    storage_url: Optional[str] = StorageUrl,
    engine: str = Engine,
    model: Optional[str] = Model,
    config: Optional[Path] = ConfigFile,
    engine_option: list[str] = EngineOption,
    workers: int = typer.Option(1, "--workers", min=1, help="Workers in this process (one per GPU)."),
    endpoint: list[str] = typer.Option([], "--endpoint", help="Only take requests for these endpoint ids."),
    allow_private_urls: bool = typer.Option(False, "--allow-private-urls"),
    lease_seconds: float = typer.Option(30.0, "--lease-seconds"),
    cancel_grace: float = typer.Option(10.0, "--cancel-grace"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
):
    """Run workers alone, against a shared database and storage (scale-out)."""
    from stillreel.jobs.worker import Worker
    from stillreel.storage import open_storage

    _logging(verbose)
    settings = _settings(data_dir, database_url, storage_url, engine, model, config, engine_option, workers=workers,
                         limits=Limits(allow_private_urls=allow_private_urls), lease_s=lease_seconds,
                         cancel_grace_s=cancel_grace)
    data_dir.mkdir(parents=True, exist_ok=True)
    stopping = threading.Event()
    pool: list[Worker] = []

    def stop(*_):
        stopping.set()
        for w in pool:
            w.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    store = _open_store(settings.db_url, stopping)
    if store is None:
        return
    storage = open_storage(settings)
    from stillreel.jobs.changes import Changes, QueueWatch

    wake = threading.Event()  # set when another process (an API replica) commits a submit
    pool.extend(Worker(settings, store, storage, endpoints=endpoint or None, wake=wake) for _ in range(workers))
    QueueWatch(store, Changes(), [wake]).start()
    threads = {i: threading.Thread(target=w.run, name=f"worker-{i}") for i, w in enumerate(pool)}
    for t in threads.values():
        t.start()
    console.print(f"{workers} worker(s) on {settings.db_url.split('@')[-1]} · engine: {settings.engine.name}")
    # Until SIGTERM/SIGINT: a worker thread never returns on its own (outages are waited out
    # inside it); one that died anyway is started again rather than left missing.
    while not stopping.is_set() or any(t.is_alive() for t in threads.values()):
        for i, t in threads.items():
            t.join(0.5)
            if not t.is_alive() and not stopping.is_set():
                logging.getLogger("stillreel.worker").error("worker %s died; restarting it", pool[i].id)
                threads[i] = threading.Thread(target=pool[i].run, name=f"worker-{i}")
                threads[i].start()


def _open_store(url: str, stopping: threading.Event):
    """The job store, waiting (with backoff) for a database that is not up yet: a worker started
    beside a restarting database must come up with it, not exit."""
    from stillreel.jobs.outage import Backoff, OutageLog, is_db_outage
    from stillreel.jobs.store import JobStore

    backoff, outage = Backoff(cap=10.0), OutageLog(logging.getLogger("stillreel.worker"), "worker start")
    while not stopping.is_set():
        try:
            store = JobStore(url)
        except Exception as exc:
            if not is_db_outage(exc):
                raise
            outage.failed(exc)
            stopping.wait(backoff.next())
            continue
        outage.ok()
        return store
    return None


def _keys(data_dir: Path, database_url: str | None):
    from stillreel.jobs.keys import Keys
    from stillreel.jobs.store import JobStore

    data_dir.mkdir(parents=True, exist_ok=True)
    return Keys(JobStore(Settings(data_dir=data_dir, database_url=database_url).db_url))


@keys_app.command("create")
def keys_create(
    name: Optional[str] = typer.Option(None, "--name"), data_dir: Path = DataDir, database_url: Optional[str] = DatabaseUrl
):
    """Create a key; the key is the last line of the output (shown once)."""
    key = _keys(data_dir, database_url).create(name)
    console.print("New API key (shown once):")
    print(key, flush=True)


@keys_app.command("list")
def keys_list(data_dir: Path = DataDir, database_url: Optional[str] = DatabaseUrl):
    """List keys (ids only; secrets are never stored)."""
    import datetime as dt

    table = Table("key id", "name", "created", "revoked")
    for k in _keys(data_dir, database_url).list():
        fmt = lambda t: dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M") if t else ""  # noqa: E731
        table.add_row(k.key_id, k.name or "", fmt(k.created_at), fmt(k.revoked_at))
    Console().print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str, data_dir: Path = DataDir, database_url: Optional[str] = DatabaseUrl):
    """Revoke a key by its id (the part before the colon)."""
    if not _keys(data_dir, database_url).revoke(key_id.split(":")[0]):
        console.print(f"[red]no active key {key_id}")
        raise typer.Exit(1)
    console.print(f"revoked {key_id}")


@app.command()
def endpoints():
    """List the endpoint ids this server offers, each with its kind."""
    from stillreel.endpoints.registry import ENDPOINTS

    width = max(len(e) for e in ENDPOINTS)
    for endpoint in ENDPOINTS.values():
        print(f"{endpoint.id:<{width}}  {endpoint.category}")


from stillreel import cli_client  # noqa: E402  (the client-side commands: run, status, result, cancel)

app.command("run")(cli_client.run)
app.command("status")(cli_client.status)
app.command("result")(cli_client.result)
app.command("cancel")(cli_client.cancel)


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
