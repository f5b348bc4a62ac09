"""Loaded by any Python started with this folder on PYTHONPATH (``stillreel twin`` sets that up).

It needs nothing from stillreel: when the app imports ``fal_client.client``, its hosts are pointed at
``STILLREEL_TWIN_URL`` (fal-client keeps REST_URL / CDN_URL as constants and builds https:// URLs, so
environment variables alone cannot switch it).
"""

import importlib.abc
import importlib.machinery
import os
import sys

_URL = os.environ.get("STILLREEL_TWIN_URL", "").rstrip("/")
_TARGET = "fal_client.client"


def _patch(module) -> None:
    module.RUN_URL_FORMAT = _URL + "/"
    module.QUEUE_URL_FORMAT = _URL + "/queue/"
    module.REST_URL = _URL
    module.CDN_URL = _URL
    module.REALTIME_URL_FORMAT = "ws" + _URL[len("http"):] + "/"


class _Loader(importlib.abc.Loader):
    def __init__(self, inner):
        self.inner = inner

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        self.inner.exec_module(module)
        _patch(module)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != _TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader)
        return spec


if _URL.startswith(("http://", "https://")):
    if _TARGET in sys.modules:
        _patch(sys.modules[_TARGET])
    else:
        sys.meta_path.insert(0, _Finder())
