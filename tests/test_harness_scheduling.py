"""How the suite schedules its slow parts: which towers converge in the background, and the run order.

The CI time budget depends on both (see benchmarks/ci_budget.md): the towers'
first applies overlap the plain tests only if the pool starts exactly the
releases the collected tests will ask for and the plain tests run first.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from tests.fake_pulumi import real
from tests.harness.fixtures import CONVERGED_RELEASE, releases_to_converge
from tests.harness.scheduling import schedule, uses_real_engine

REPO = Path(__file__).resolve().parents[1]


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


def test_under_xdist_the_towers_modules_come_first_then_plain_then_real_engine() -> None:
    engine, towers, plain = module_importing(RealPulumi=real.RealPulumi), ModuleType("towers"), ModuleType("plain")
    engine_tower = module_importing(RealPulumi=real.RealPulumi)
    items = [
        fake_item(module=engine),
        fake_item("converged_tower", module=engine_tower),
        fake_item(module=plain),
        fake_item(module=towers, container=True),
        fake_item(module=towers),
    ]
    # The towers group (its real-engine module after its container module), the plain module, the engine module.
    assert schedule(items, towers_first=True) == [items[3], items[4], items[1], items[2], items[0]]


INNER_CONFTEST = """
from tests.conftest import pytest_collection_modifyitems  # noqa: F401 - the hook under test
pytest_plugins = ["tests.harness.fixtures"]
"""

INNER_MODULE = """
import os, pytest
{mark}
@pytest.mark.parametrize("n", range({count}))
def test_records_its_worker(n):
    with open({log!r}, "a") as log:
        log.write(f"{{__name__}} {{n}} {{os.environ['PYTEST_XDIST_WORKER']}}\\n")
"""


def test_two_workers_run_every_container_module_on_one_worker_and_each_module_whole(tmp_path: Path) -> None:
    """The real seam: pyproject's xdist options, the groups conftest sets, and xdist's scheduler, with -n 2."""
    log = tmp_path / "ran.log"
    suite = tmp_path / "suite"
    suite.mkdir()
    options = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["addopts"]
    (suite / "pytest.ini").write_text(f"[pytest]\naddopts = {options}\nmarkers =\n    container: boots\n")
    (suite / "conftest.py").write_text(INNER_CONFTEST)
    modules = {"test_a_container": 4, "test_b_plain": 6, "test_c_plain": 6, "test_d_container": 3, "test_e_plain": 5}
    for name, count in modules.items():
        mark = "pytestmark = pytest.mark.container" if "container" in name else ""
        (suite / f"{name}.py").write_text(INNER_MODULE.format(mark=mark, count=count, log=str(log)))
    env = {**os.environ, "PYTHONPATH": str(REPO), "CI": ""}
    done = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "-q", "-p", "no:cacheprovider"], cwd=suite,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    ran = [line.split() for line in log.read_text().splitlines()]
    assert len(ran) == sum(modules.values())
    workers = {module: {worker for name, _, worker in ran if name == module} for module in modules}
    assert all(len(found) == 1 for found in workers.values()), workers  # each module on one worker
    assert workers["test_a_container"] == workers["test_d_container"]  # the towers group on one worker
    on_towers_worker = [name for name, _, worker in ran if worker in workers["test_a_container"]]
    assert on_towers_worker[:7] == ["test_a_container"] * 4 + ["test_d_container"] * 3  # and first there
