"""pytest plugin (entry point ``pytest11``): ``pytest --stillreel`` runs the session against an embedded
twin with ``fal_client`` switched to it. Inert without the flag.

The ``stillreel_twin`` fixture gives ``url``, ``key`` (the key fal_client sends: a real one with
``--stillreel-auth``, else the placeholder a no-auth twin accepts) and ``faults(spec)``, a context
manager that changes the injected faults for one block and yields that block's own fault count.
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
    group.addoption("--stillreel-auth", action="store_true", help="the twin requires a key (one is made and used)")


class Twin:
    def __init__(self, faults: str | None, auth: bool = False):
        from stillreel.api.app import create_app
        from stillreel.api.faults import FaultMiddleware, FaultSpec
        from stillreel.compat import NO_AUTH_PLACEHOLDER_KEY
        from stillreel.config import Settings
        from stillreel.twin.server import EmbeddedServer, route_name

        self._temp = tempfile.TemporaryDirectory(prefix="stillreel-pytest-")
        app = create_app(Settings(data_dir=Path(self._temp.name), auth=auth, workers=1))
        # Never None: a real FAL_KEY from the environment must not be sent to the twin either.
        self.key = app.state.services.keys.create("pytest") if auth else NO_AUTH_PLACEHOLDER_KEY
        self.middleware = FaultMiddleware(app, FaultSpec.parse(faults), route_name)
        self.server = EmbeddedServer(self.middleware)
        self.server.start()
        self.url = self.server.url

    @contextlib.contextmanager
    def faults(self, spec: str):
        """Inject ``spec``'s faults until the block ends, from a generator seeded with its own
        ``seed=``; yields a counter of the faults injected inside the block only."""
        from stillreel.api.faults import FaultSpec

        with self.middleware.use(FaultSpec.parse(spec)) as injected:
            yield injected

    def close(self):
        self.server.stop()
        self._temp.cleanup()


def pytest_configure(config):
    if not config.getoption("--stillreel"):
        return
    from stillreel.compat import use_stillreel

    twin = Twin(config.getoption("--stillreel-faults"), auth=config.getoption("--stillreel-auth"))
    config._stillreel_twin = twin
    config._stillreel_switch = use_stillreel(twin.url, key=twin.key)


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
