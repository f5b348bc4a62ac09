"""An API-only stillreel app for ``uvicorn --factory --workers N`` (bench/api.py --api-processes N).

``stillreel serve`` runs one API process with its workers embedded. To measure how status
throughput scales with API processes, bench/api.py starts N uvicorn processes of this factory (no
workers, no webhook dispatcher, no housekeeping: ``run_services=False``) on the same database as a
``stillreel serve`` that runs the worker. Settings come from the environment.
"""

from __future__ import annotations

import os
from pathlib import Path

from stillreel.api.app import create_app
from stillreel.config import Settings


def app():
    settings = Settings(data_dir=Path(os.environ["STILLREEL_DATA_DIR"]),
                        database_url=os.environ.get("STILLREEL_DATABASE_URL") or None, auth=True, workers=0)
    return create_app(settings, run_services=False)
