"""pytest plugin (entry point ``pytest11``): ``pytest --stillreel`` runs the session against an embedded
twin with ``fal_client`` switched to it. Inert without the flag.

The ``stillreel_twin`` fixture gives ``url``, ``key`` and ``faults(spec)``, a context manager that
changes the injected faults for the duration of one test.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import pytest


def pytest_addoption(parser):
    group = parser.getgroup("stillreel")
    group.addoption("--stillreel", action="store_true", help="run against an embedded stillreel twin")
    group.addoption("--stillreel-faults", default=None, help="ROUTE=RATE,…,seed=N for the whole run")


class Twin:
    def __init__(self, faults: str | None):
        from stillreel.api.app import create_app
        from stillreel.api.faults import FaultMiddleware, FaultSpec
        from stillreel.config import Settings
        from stillreel.twin.server import EmbeddedServer, route_name

        self._temp = tempfile.TemporaryDirectory(prefix="stillreel-pytest-")
        app = create_app(Settings(data_dir=Path(self._temp.name), auth=False, workers=1))
        self.middleware = FaultMiddleware(app, FaultSpec.parse(faults), route_name)
        self.server = EmbeddedServer(self.middleware)
        self.server.start()
        self.url = self.server.url
        self.key = None

    @contextlib.contextmanager
    def faults(self, spec: str):
        """Inject ``spec``'s faults (in this process's server) until the block ends."""
        from stillreel.api.faults import FaultSpec

        previous = self.middleware.spec
        self.middleware.spec = FaultSpec.parse(spec)
        try:
            yield self.middleware.injected
        finally:
            self.middleware.spec = previous

    def close(self):
        self.server.stop()
        self._temp.cleanup()


def pytest_configure(config):
    if not config.getoption("--stillreel"):
        return
    from stillreel.compat import use_stillreel

    twin = Twin(config.getoption("--stillreel-faults"))
    config._stillreel_twin = twin
    config._stillreel_switch = use_stillreel(twin.url)


def pytest_unconfigure(config):
    twin = getattr(config, "_stillreel_twin", None)
    if twin is not None:
        config._stillreel_switch.restore()
        twin.close()


@pytest.fixture
def stillreel_twin(request) -> Twin:
    twin = getattr(request.config, "_stillreel_twin", None)
    if twin is None:
        pytest.skip("needs pytest --stillreel")
    return twin
