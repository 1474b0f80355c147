"""How the suite orders and groups its tests so that the slow parts overlap the rest.

Imported by tests/conftest.py (the hook that applies it) and tests/harness/fixtures.py
(which worker starts the tower pool); kept apart from both so that neither imports the
other's pytest plugin before pytest registers it. Figures: benchmarks/ci_budget.md.
"""

from __future__ import annotations

from types import ModuleType

import pytest

#: The pytest-xdist group of every module that boots containers or uses the tower pool: one worker runs them
#: all, so one pool per run converges each release once and no two container tests compete for the harness.
TOWERS_GROUP = "towers"

#: The module that locates the built Pulumi CLI; a test module importing from it runs the real engine.
REAL_ENGINE_MODULE = "tests.fake_pulumi.real"


def uses_towers(item: pytest.Item) -> bool:
    """Whether a test boots containers or takes a tower from the session's pool."""
    names = getattr(item, "fixturenames", ())
    return item.get_closest_marker("container") is not None or "tower_pool" in names or "converged_tower" in names


def modules_using_towers(items: list[pytest.Item]) -> set[ModuleType | None]:
    """The modules with at least one test that ``uses_towers``: each goes whole into the towers group."""
    return {getattr(item, "module", None) for item in items if uses_towers(item)}


def runs_in_xdist_worker(config: pytest.Config) -> bool:
    """Whether this process is one of pytest-xdist's workers (``-n N``), not a whole run of its own."""
    return hasattr(config, "workerinput")


def in_towers_group(item: pytest.Item) -> bool:
    """Whether the item carries the towers group's mark (set at collection by tests/conftest.py)."""
    return any(mark.args[:1] == (TOWERS_GROUP,) for mark in item.iter_markers("xdist_group"))


def uses_real_engine(module: ModuleType | None) -> bool:
    """Whether a test module takes something from tests/fake_pulumi/real.py (the built CLI's locator)."""
    if module is None:
        return False
    return any(getattr(value, "__module__", None) == REAL_ENGINE_MODULE for value in vars(module).values())


def schedule(items: list[pytest.Item], *, towers_first: bool = False) -> list[pytest.Item]:
    """The run order, each module kept whole: plain, towers (container or pool) modules, real-engine modules.

    A whole run (no xdist) takes plain modules first: they keep one core busy
    while the towers' first applies, started in the background at the session's
    start (tests/harness/tower_pool.py), wait on apt and SSH. The real-engine
    tests come last so that a Pulumi CLI build left running by setup overlaps
    everything else.

    Under pytest-xdist (``towers_first``) the towers modules come first: they
    form one xdist group (``group``), which the scheduler hands whole to the
    first worker, while the other worker takes the plain modules from the
    queue; the real-engine modules still come last. Within the towers group,
    its real-engine modules (the tower through the engine, the wheel's check)
    come after its container modules.

    A module moves as a whole (one with a single container test goes with the
    container modules), so its module-scoped fixtures are set up once; the sort
    is stable, so the order within a group stays as collected.
    """
    towers = modules_using_towers(items)

    def rank(item: pytest.Item) -> tuple[bool, bool]:
        module = getattr(item, "module", None)
        if towers_first:
            return module not in towers, uses_real_engine(module)
        return uses_real_engine(module), module in towers

    return sorted(items, key=rank)


def group(item: pytest.Item, towers: set[ModuleType | None]) -> str:
    """The item's xdist group: the towers group, or its own module (so that a module runs on one worker)."""
    module = getattr(item, "module", None)
    if module in towers:
        return TOWERS_GROUP
    return module.__name__ if module is not None else item.nodeid.split("::", 1)[0]
