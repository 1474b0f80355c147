"""Shared test setup: the booted-container fixtures, isolation from the developer's own ~/.nomadrig,
and the run order: plain tests, then container tests, then the real-engine tests, which wait for the
Pulumi CLI build that setup may have left running."""

from __future__ import annotations

from types import ModuleType

import pytest

from tests.harness.engine_build import EngineBuildFailed, wait_for_engine_build

pytest_plugins = ["tests.harness.fixtures"]

#: The module that locates the built Pulumi CLI; a test module importing from it runs the real engine.
REAL_ENGINE_MODULE = "tests.fake_pulumi.real"


@pytest.fixture(autouse=True)
def _packaged_catalog_only(monkeypatch, tmp_path_factory):
    """A refreshed catalog in the developer's home must not change what tests see."""
    monkeypatch.setenv("NOMADRIG_CATALOG", str(tmp_path_factory.getbasetemp() / "no-refreshed-catalog"))


def uses_real_engine(module: ModuleType | None) -> bool:
    """Whether a test module takes something from tests/fake_pulumi/real.py (the built CLI's locator)."""
    if module is None:
        return False
    return any(getattr(value, "__module__", None) == REAL_ENGINE_MODULE for value in vars(module).values())


def schedule(items: list[pytest.Item]) -> list[pytest.Item]:
    """Plain modules first, then modules with container tests, then real-engine modules, each kept whole.

    Plain tests keep one core busy while the towers' first applies, started in
    the background at the session's start (tests/harness/tower_pool.py), wait
    on apt and SSH; the real-engine tests come last so that a Pulumi CLI build
    left running by setup overlaps everything else. A module moves as a whole
    (one with a single container test goes with the container modules), so its
    module-scoped fixtures are set up once; the sort is stable, so the order
    within a group stays as collected.
    """
    with_container = {item.module for item in items if item.get_closest_marker("container") is not None}

    def group(item: pytest.Item) -> tuple[bool, bool]:
        module = getattr(item, "module", None)
        return uses_real_engine(module), module in with_container

    return sorted(items, key=group)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the tests in the order ``schedule`` gives."""
    items[:] = schedule(items)


@pytest.fixture(scope="module", autouse=True)
def _engine_built_before_real_engine_tests(request: pytest.FixtureRequest) -> None:
    """Before a real-engine module's first fixture, wait for a background CLI build; fail if it failed."""
    if not uses_real_engine(request.module):
        return
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")

    def say(line: str) -> None:
        if reporter is not None:
            reporter.write_line(f"\n{line}")

    try:
        wait_for_engine_build(say=say)
    except EngineBuildFailed as exc:
        pytest.fail(str(exc), pytrace=False)
