"""Fixtures of the CLI tests: the stand-in Hub holding a base model and two adapters, and uv's
resolution answered here (tests/sources/test_packages.py runs uv itself against the registry)."""

from __future__ import annotations

import pytest

from deployer.sources import packages

from ..fake_hub import FakeHub
from .hub_stand_ins import BASE, QWEN3_4B, lora, uv_output


@pytest.fixture
def online(monkeypatch):
    with FakeHub() as fake:
        fake.serve_to(monkeypatch)
        fake.add(BASE, {"config.json": QWEN3_4B})
        fake.add("org/chess-lora", {"adapter_config.json": lora(8)})
        fake.add("org/sql-lora", {"adapter_config.json": lora(8)}, revision="main")
        fake.add("org/sql-lora", {"adapter_config.json": lora(8)}, revision="v1")
        yield fake


@pytest.fixture
def resolver(monkeypatch):
    """uv's resolution, answered here; `resolver.torch` is the torch version it resolves to."""

    class Resolver:
        def __init__(self):
            self.torch = "2.9.0"
            self.calls = []

        def __call__(self, requirements, python, platform=packages.PLATFORM):
            self.calls.append((tuple(requirements), python, platform))
            return uv_output(requirements, self.torch)

    answer = Resolver()
    monkeypatch.setattr(packages, "compile_requirements", answer)
    return answer
