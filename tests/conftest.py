"""Shared test setup: the booted-container fixtures, and isolation from the developer's own ~/.nomadrig."""

from __future__ import annotations

import pytest

pytest_plugins = ["tests.harness.fixtures"]


@pytest.fixture(autouse=True)
def _packaged_catalog_only(monkeypatch, tmp_path_factory):
    """A refreshed catalog in the developer's home must not change what tests see."""
    monkeypatch.setenv("NOMADRIG_CATALOG", str(tmp_path_factory.getbasetemp() / "no-refreshed-catalog"))
