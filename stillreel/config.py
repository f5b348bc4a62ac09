"""Settings for a stillreel server or worker: one object, built by the CLI, passed down explicitly."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from stillreel.engines import EngineSpec

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    max_input_bytes: int = 50 * MiB  # one fetched image or mask
    max_image_pixels: int = 40_000_000  # width × height of a decoded input
    min_image_side: int = 16
    fetch_timeout_s: float = 20.0
    max_upload_bytes: int = 2048 * MiB  # one stored file
    max_body_bytes: int = 64 * MiB  # a JSON request body (data URIs included)
    allow_private_urls: bool = False  # fetch inputs from, and send webhooks to, loopback / private networks
    body_timeout_s: float = 60.0  # a JSON request body must arrive whole within this
    max_header_bytes: int = 64 * 1024  # request line and headers together
    keep_alive_s: int = 5  # an idle keep-alive connection is closed after this
    max_streams_per_key: int = 100  # concurrent status streams (SSE) of one API key


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path(".stillreel")
    database_url: str | None = None  # None: SQLite in data_dir
    storage_url: str | None = None  # None: files in data_dir/files; or s3://bucket/prefix?endpoint=…
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = None  # None: built from each request's Host
    # Peers whose X-Forwarded-Proto/-Host are believed (addresses or networks; "*": any). Empty:
    # nobody's, so a caller cannot make the URLs handed back (status_url, file URLs) point elsewhere.
    forwarded_allow_ips: tuple[str, ...] = ()
    auth: bool = True
    workers: int = 1
    engine: EngineSpec = field(default_factory=EngineSpec)
    bindings: dict[str, EngineSpec] = field(default_factory=dict)  # endpoint id → engine
    limits: Limits = field(default_factory=Limits)
    lease_s: float = 30.0
    cancel_grace_s: float = 10.0  # a running engine that ignores a cancel is killed after this
    max_attempts: int = 3  # a request whose worker died this many times fails
    default_max_queue: int | None = None  # fal_max_queue_length when the caller sends none
    # Delay before each webhook retry: 10 attempts over about two hours, as fal does.
    webhook_backoff_s: tuple[float, ...] = (5, 15, 45, 120, 300, 600, 900, 1800, 3600)
    webhook_timeout_s: float = 15.0  # one delivery, DNS to response, all told
    webhook_concurrency: int = 8  # deliveries under way at once per server: hung receivers cost only their own slot
    retention_s: float | None = None  # --retention: finished requests and stored files older than this go

    @property
    def db_url(self) -> str:
        if self.database_url:
            url = self.database_url
            if url.startswith("postgres://"):
                url = "postgresql://" + url[len("postgres://") :]
            if url.startswith("postgresql://"):
                url = "postgresql+psycopg://" + url[len("postgresql://") :]
            return url
        return f"sqlite:///{(self.data_dir / 'stillreel.db').resolve()}"

    def engine_for(self, endpoint_id: str) -> EngineSpec:
        return self.bindings.get(endpoint_id, self.engine)

    def engine_specs(self) -> list[EngineSpec]:
        specs = [self.engine, *self.bindings.values()]
        return list({repr(s.to_json()): s for s in specs}.values())


def load_config_file(path: Path) -> tuple[EngineSpec | None, dict[str, EngineSpec]]:
    """Read ``stillreel.toml``: ``[engine]`` (the default) and ``[endpoints."<id>"]`` bindings.

    ```toml
    [engine]
    name = "diffusion"
    model = "/models/Wan2.2-TI2V-5B-Diffusers"

    [endpoints."fal-ai/kling-video/o3/standard/image-to-video"]
    name = "diffusion"
    model = "/models/LTX-Video"
    steps = 30
    ```
    """
    data = tomllib.loads(Path(path).read_text())

    def spec(table: dict) -> EngineSpec:
        table = dict(table)
        name = table.pop("name", table.pop("engine", "motion"))
        return EngineSpec(name, table)

    default = spec(data["engine"]) if "engine" in data else None
    bindings = {eid: spec(t) for eid, t in data.get("endpoints", {}).items()}
    return default, bindings
