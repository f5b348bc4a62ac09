"""Engines for fault tests only (never shipped)."""

from __future__ import annotations

import os

from engines import StepEngine


class BrokenEngine:
    """Its process dies while loading, every time: a worker whose runner can never start."""

    name = "test-broken"
    capabilities = StepEngine.capabilities

    def __init__(self, **options):
        os._exit(3)
