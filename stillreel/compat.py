"""Point an existing app that uses the unmodified ``fal_client`` package at a stillreel server.

```python
import fal_client
from stillreel.compat import use_stillreel

use_stillreel("http://127.0.0.1:8000", key="KEY_ID:SECRET")   # once, at start-up
fal_client.subscribe("fal-ai/kling-video/v2/master/image-to-video", arguments={...})
```

What the call does (fal-client 1.0.x reads these at call time, see fal-protocol.md §11.1 P4):

* sets ``fal_client.client.RUN_URL_FORMAT`` to ``{url}/``, ``QUEUE_URL_FORMAT`` to ``{url}/queue/``,
  ``REST_URL`` and ``CDN_URL`` to ``{url}`` and ``REALTIME_URL_FORMAT`` to ``ws(s)://host/``;
* sets ``FAL_KEY`` in ``os.environ`` to the key (argument, else ``STILLREEL_KEY``, else the
  ``FAL_KEY`` already set, else the placeholder ``"stillreel"`` that a ``--no-auth`` server accepts:
  fal-client refuses to send requests without some key);
* forgets the credentials, HTTP connections and upload-token managers the default clients
  (``fal_client.sync_client`` / ``fal_client.async_client``, behind ``fal_client.run``,
  ``fal_client.subscribe_async`` …) may have cached, so they pick up the new key and URLs even if
  the app already used them. Clients the app built itself (``fal_client.SyncClient(key=…)``)
  follow the new URLs on their next call but keep their own key and caches: pass them in
  ``clients=[…]`` to have their key replaced with stillreel's and their caches (credentials,
  connections, the upload-token manager bound to fal's token URL) dropped too.

It returns a ``Switch`` whose ``restore()`` puts everything back (useful in tests).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

NO_AUTH_PLACEHOLDER_KEY = "stillreel"
_CONSTANTS = ("RUN_URL_FORMAT", "QUEUE_URL_FORMAT", "REST_URL", "CDN_URL", "REALTIME_URL_FORMAT")
# Values the fal_client clients compute once and cache on the instance.
_CACHED = ("_auth", "_client", "_token_manager")
_MISSING = object()


@dataclass
class Switch:
    url: str
    key: str
    previous_constants: dict[str, Any] = field(repr=False)
    previous_fal_key: str | None = field(repr=False)
    clients: tuple = field(repr=False, default=())
    previous_keys: list = field(repr=False, default_factory=list)  # (client, key) of clients= entries

    def restore(self) -> None:
        """Put the fal_client constants, ``FAL_KEY`` and the default clients back as they were."""
        from fal_client import client as fal_module

        for name, value in self.previous_constants.items():
            setattr(fal_module, name, value)
        if self.previous_fal_key is None:
            os.environ.pop("FAL_KEY", None)
        else:
            os.environ["FAL_KEY"] = self.previous_fal_key
        for client, key in self.previous_keys:
            _set_key(client, key)
        _forget_cached(self.clients)


def _forget_cached(clients) -> None:
    for client in clients:
        for name in _CACHED:
            # functools.cached_property and asyncstdlib's cached_property both keep their value in
            # the instance __dict__ (SyncClient is a frozen dataclass, so no setattr/delattr).
            client.__dict__.pop(name, None)


def _set_key(client, key: str | None) -> None:
    object.__setattr__(client, "key", key)  # SyncClient is a frozen dataclass


def use_stillreel(url: str = "http://127.0.0.1:8000", key: str | None = None, *, clients=()) -> Switch:
    """Send everything the ``fal_client`` module does (run, queue, status, uploads) to ``url``."""
    import fal_client
    from fal_client import client as fal_module

    base = url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ValueError(f"use_stillreel needs an http(s) URL, got {url!r}")
    previous_fal_key = os.environ.get("FAL_KEY")
    resolved = key or os.environ.get("STILLREEL_KEY") or previous_fal_key or NO_AUTH_PLACEHOLDER_KEY
    previous = {name: getattr(fal_module, name, _MISSING) for name in _CONSTANTS}
    previous = {k: v for k, v in previous.items() if v is not _MISSING}

    fal_module.RUN_URL_FORMAT = f"{base}/"
    fal_module.QUEUE_URL_FORMAT = f"{base}/queue/"
    fal_module.REST_URL = base
    fal_module.CDN_URL = base
    fal_module.REALTIME_URL_FORMAT = "ws" + base[len("http"):] + "/"
    os.environ["FAL_KEY"] = resolved

    previous_keys = [(client, client.key) for client in clients]
    for client in clients:
        _set_key(client, resolved)
    affected = (fal_client.sync_client, fal_client.async_client, *clients)
    _forget_cached(affected)
    return Switch(base, resolved, previous, previous_fal_key, affected, previous_keys)
