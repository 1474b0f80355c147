"""How the suite schedules its slow parts: which towers converge in the background, and the run order.

The CI time budget depends on both (see benchmarks/ci_budget.md): the towers'
first applies overlap the plain tests only if the pool starts exactly the
releases the collected tests will ask for and the plain tests run first.
"""

from __future__ import annotations

from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from tests.conftest import schedule, uses_real_engine
from tests.fake_pulumi import real
from tests.harness.fixtures import CONVERGED_RELEASE, releases_to_converge


def fake_item(*fixtures: str, params: dict[str, Any] | None = None, container: bool = False, module: Any = None) -> Any:
    """What the scheduling code reads from a collected test: fixture names, parameters, marker, module."""
    return SimpleNamespace(
        fixturenames=list(fixtures),
        callspec=SimpleNamespace(params=params or {}) if params is not None else None,
        module=module,
        get_closest_marker=lambda name: object() if name == "container" and container else None,
    )


def module_importing(**names: Any) -> ModuleType:
    module = ModuleType("tests.test_fake")
    vars(module).update(names)
    return module


def test_a_test_using_the_converged_tower_asks_for_debian_12() -> None:
    assert releases_to_converge([fake_item("tower_pool", "converged_tower")]) == {CONVERGED_RELEASE}


def test_a_pool_test_parametrised_by_release_asks_for_that_release() -> None:
    items = [fake_item("tower_pool", "applied", params={"applied": "trixie"})]
    assert releases_to_converge(items) == {"trixie"}


def test_tests_that_need_no_tower_start_none() -> None:
    items = [fake_item("tmp_path"), fake_item("debian_container", params={"debian_release": "trixie"})]
    assert releases_to_converge(items) == set()  # a bare container is not a converged tower


def test_a_module_importing_the_real_engine_locator_is_a_real_engine_module() -> None:
    assert uses_real_engine(module_importing(RealPulumi=real.RealPulumi))
    assert not uses_real_engine(module_importing(Path=pytest.MonkeyPatch))
    assert not uses_real_engine(None)


def test_plain_modules_run_first_then_container_modules_then_real_engine_modules() -> None:
    engine, towers, plain = module_importing(RealPulumi=real.RealPulumi), ModuleType("towers"), ModuleType("plain")
    items = [
        fake_item(module=engine, container=True),
        fake_item(module=engine),
        fake_item(module=towers, container=True),
        fake_item(module=plain),
    ]
    assert schedule(items) == [items[3], items[2], items[0], items[1]]  # the engine module stays whole, in order


def test_a_module_with_one_container_test_moves_whole_so_its_module_fixtures_are_set_up_once() -> None:
    mixed, plain = ModuleType("mixed"), ModuleType("plain")
    items = [fake_item(module=mixed), fake_item(module=mixed, container=True), fake_item(module=plain)]
    assert schedule(items) == [items[2], items[0], items[1]]
