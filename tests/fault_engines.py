"""Engines for fault tests only (never shipped)."""

from __future__ import annotations

import os

from engines import StepEngine


class BrokenEngine:
    """Its process dies while loading, every time: a worker whose render child can never start."""

    name = "test-broken"
    capabilities = StepEngine.capabilities

    def __init__(self, **options):
        os._exit(3)


class MissingFileEngine:
    """Fails every generation with an OSError naming a server-side file."""

    name = "test-missing-file"
    capabilities = StepEngine.capabilities
    PATH = "/srv/private/weights/model.safetensors"

    def __init__(self, **options):
        pass

    def generate(self, request, progress):
        raise FileNotFoundError(2, "No such file or directory", self.PATH)
