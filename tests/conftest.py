import os
import sys
from pathlib import Path

import pytest

# Test helpers (live_server, engines, videocheck, …) import as top-level modules.
sys.path.insert(0, str(Path(__file__).parent))
# The test engine is loaded by name inside spawned render child processes, which need tests/ importable.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))

PG_URL = os.environ.get("STILLREEL_TEST_DATABASE_URL")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "postgres" in getattr(item, "fixturenames", ()) or item.get_closest_marker("postgres"):
            if not PG_URL:
                item.add_marker(pytest.mark.skip(reason="STILLREEL_TEST_DATABASE_URL is not set (make test sets it)"))


def empty_postgres() -> str:
    """PG_URL with an empty stillreel schema (the tables are dropped first)."""
    from stillreel.config import Settings
    from stillreel.jobs.schema import make_engine, metadata

    engine = make_engine(Settings(database_url=PG_URL).db_url)
    metadata.drop_all(engine)
    engine.dispose()
    return PG_URL


def store_url(database_url: str) -> str:
    """``database_url`` as the job store takes it (PostgreSQL's through Settings, which names the driver)."""
    from stillreel.config import Settings

    return Settings(database_url=database_url).db_url if database_url.startswith("postgresql") else database_url


def server_env(database: str) -> dict:
    """The environment for a live server on ``database`` ("sqlite": its data folder's file;
    "postgres": an empty schema on PG_URL, skipped without one)."""
    if database == "sqlite":
        return {}
    if not PG_URL:
        pytest.skip("STILLREEL_TEST_DATABASE_URL is not set (make test sets it)")
    return {"STILLREEL_DATABASE_URL": empty_postgres()}


@pytest.fixture
def postgres():
    """A PostgreSQL URL with an empty stillreel schema (the tables are dropped first)."""
    return empty_postgres()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path):
    """Each job-store and API test runs on both databases: SQLite (embedded) and PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    if not PG_URL:
        pytest.skip("STILLREEL_TEST_DATABASE_URL is not set (make test sets it)")
    return request.getfixturevalue("postgres")


@pytest.fixture
def store(database_url):
    """A job store on each database."""
    from stillreel.jobs.store import JobStore

    s = JobStore(store_url(database_url))
    yield s
    s.close()
