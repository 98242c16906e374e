from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runtime.harness import Runtime, RuntimeFactory


@pytest.fixture
def start_runtime(tmp_path: Path) -> Iterator[RuntimeFactory]:
    factory = RuntimeFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.cleanup()


@pytest.fixture
def runtime(start_runtime: RuntimeFactory) -> Runtime:
    return start_runtime()


@pytest.fixture(scope="module")
def shared_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    """One server for the read-only tests (requests that must change nothing),
    which keeps the suite fast; each of those tests asserts it stayed clean."""
    factory = RuntimeFactory(tmp_path_factory.mktemp("shared-runtime"))
    try:
        yield factory()
    finally:
        factory.cleanup()
