"""Shared test setup: the booted-container fixtures, isolation from the developer's own ~/.nomadrig,
and the run order: plain tests, then container tests, then the real-engine tests, which wait for the
Pulumi CLI build that setup may have left running. Under pytest-xdist (``-n 2``, the README's test
command) one worker runs every container module while the other runs the plain ones."""

from __future__ import annotations

import os

import pytest

from tests.harness.engine_build import EngineBuildFailed, wait_for_engine_build
from tests.harness.scheduling import group, modules_using_towers, runs_in_xdist_worker, schedule, uses_real_engine

pytest_plugins = ["tests.harness.fixtures"]

# pytest-xdist's workers start with COLUMNS=80 and LINES=24 in their environment, and the CLI's rich console,
# made when nomadrig.cli is imported (after this, by the plugin above and the test modules), would keep that
# width for the whole worker: the tests that give a width through CliRunner's env would not get it. Without
# them every process sizes its console as a whole run does.
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)


@pytest.fixture(autouse=True)
def _packaged_catalog_only(monkeypatch, tmp_path_factory):
    """A refreshed catalog in the developer's home must not change what tests see."""
    monkeypatch.setenv("NOMADRIG_CATALOG", str(tmp_path_factory.getbasetemp() / "no-refreshed-catalog"))


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups (it renames node ids by them)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the tests in the order ``schedule`` gives, each in its xdist group."""
    items[:] = schedule(items, towers_first=runs_in_xdist_worker(config))
    towers = modules_using_towers(items)
    for item in items:
        item.add_marker(pytest.mark.xdist_group(group(item, towers)))


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
