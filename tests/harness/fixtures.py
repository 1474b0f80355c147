"""pytest fixtures for booted Debian containers.

Load with ``pytest_plugins = ["tests.harness.fixtures"]`` in tests/conftest.py.

- ``debian_release``: parametrised over bookworm (Debian 12) and trixie (13).
- ``debian_container``: one booted container of that release, default spec.
- ``boot_container``: a factory for custom specs (extra packages, NoCloud
  seed, read-only bind mounts); everything it booted is torn down at the end
  of the test, pass or fail.
- ``container_ssh_key``: the per-session test key pair (generated, in a tmp dir).
- ``converged_tower``: ONE Debian 12 tower per session, converged once by the
  full playbook; shared by every test that needs a configured tower.
- ``tower_pool``: the session's converged towers, one per release; their first
  applies start in the background at the session's first test, or under
  pytest-xdist at the first test of the towers group (see tower_pool.py).

Without the prerequisites the tests skip with the reason; with ``CI`` set they
fail instead, so a CI machine cannot silently skip the real tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness.container import ContainerSpec, DebianContainer
from tests.harness.prereqs import check_prerequisites, in_ci
from tests.harness.rootfs import RELEASES
from tests.harness.scheduling import in_towers_group, runs_in_xdist_worker
from tests.harness.tower_pool import TowerPool
from tests.harness.towers import TOWER_RELEASES, ConvergedTower

#: The release of the shared converged tower: Debian 12, where the full playbook (driver 535, CUDA 11.8) converges.
CONVERGED_RELEASE = "bookworm"

#: Per-container trees live here, not in /tmp: a tower with CUDA is several GB.
WORK_ROOT = Path(os.environ.get("NOMADRIG_TEST_WORKDIR", "/var/tmp/nomadrig-tests"))

BootContainer = Callable[..., DebianContainer]


@pytest.fixture(scope="session")
def container_prerequisites() -> None:
    """Skip (or, under CI, fail) when this host cannot boot test containers."""
    found = check_prerequisites()
    if found.ok:
        return
    if in_ci():
        pytest.fail(f"CI is set, so this is an error: {found.reason}", pytrace=False)
    pytest.skip(found.reason)


@pytest.fixture(scope="session")
def container_ssh_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ed25519 key pair made for this test session; never stored in the repo."""
    key = tmp_path_factory.mktemp("container-ssh") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "nomadrig-test", "-f", str(key)], check=True)
    return key


@pytest.fixture(params=sorted(RELEASES), ids=lambda release: f"debian-{RELEASES[release]}-{release}")
def debian_release(request: pytest.FixtureRequest) -> str:
    """A supported Debian release codename: bookworm (12) and trixie (13)."""
    return str(request.param)


@pytest.fixture
def boot_container(container_prerequisites: None, container_ssh_key: Path, tmp_path: Path) -> Iterator[BootContainer]:
    """Boot containers from a spec; all are stopped and removed when the test ends."""
    booted: list[DebianContainer] = []

    def boot(spec: ContainerSpec | str, *, timeout: float = 120.0) -> DebianContainer:
        if isinstance(spec, str):
            spec = ContainerSpec(release=spec)
        workdir = WORK_ROOT / f"{os.getpid()}-{tmp_path.name}-c{len(booted)}"
        container = DebianContainer(spec, workdir, container_ssh_key)
        booted.append(container)
        return container.boot(timeout)

    yield boot
    for container in booted:
        container.close()
        # Keep the console log next to the test's other artefacts, drop the rest.
        if container.boot_log.exists():
            shutil.copy(container.boot_log, tmp_path / f"{container.name}-boot.log")
        shutil.rmtree(container.workdir, ignore_errors=True)


@pytest.fixture
def debian_container(boot_container: BootContainer, debian_release: str) -> DebianContainer:
    """A freshly booted container of each supported release, reachable over SSH."""
    return boot_container(ContainerSpec(release=debian_release))


def releases_to_converge(items: list[pytest.Item]) -> set[str]:
    """The releases whose converged tower the collected tests will ask the pool for.

    A test using ``converged_tower`` needs Debian 12; one that uses the pool and
    is parametrised with a release codename (test_tower_container.py's
    ``applied``) needs that release.
    """
    wanted: set[str] = set()
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "converged_tower" in names:
            wanted.add(CONVERGED_RELEASE)
        if "tower_pool" in names:
            params = getattr(getattr(item, "callspec", None), "params", {})
            wanted.update(value for value in params.values() if isinstance(value, str) and value in TOWER_RELEASES)
    return wanted


def start_wanted_releases(pool: TowerPool, items: list[pytest.Item]) -> None:
    """Start the first applies of every release the collected tests will ask for, side by side."""
    for codename in sorted(releases_to_converge(items)):
        try:
            pool.start(codename)
        except Exception as exc:  # noqa: BLE001 - reported by the test that needs the tower, which starts it again
            warnings.warn(f"could not start the {codename} tower in the background: {exc}", stacklevel=1)


@pytest.fixture(scope="session")
def tower_pool(request: pytest.FixtureRequest, container_prerequisites: None,
               container_ssh_key: Path) -> Iterator[TowerPool]:
    """The session's towers, one per release, each converged once; all stopped at the end of the session.

    Every release the collected tests need starts converging as soon as the pool exists, whichever test
    asked for it first: a test that waits for Debian 12 then does not hold back Debian 13's first apply.
    """
    pool = TowerPool(container_ssh_key, WORK_ROOT)
    try:
        start_wanted_releases(pool, request.session.items)
        yield pool
    finally:
        pool.close()


_POOL_STARTED = pytest.StashKey[bool]()


@pytest.fixture(autouse=True)
def _towers_converge_in_background(request: pytest.FixtureRequest) -> None:
    """Start the pool's first applies once per process, as early as this process can use them.

    A whole run starts them at its first test, so that they converge while the
    plain tests (ordered first) use the CPU. An xdist worker starts them at its
    first test of the towers group: only that worker runs the container tests
    (tests/conftest.py), while the other worker runs the plain ones. Without the
    container prerequisites nothing starts here: the container tests then skip
    or fail through ``container_prerequisites`` as usual.
    """
    session = request.session
    if session.stash.get(_POOL_STARTED, False):
        return
    if runs_in_xdist_worker(request.config) and not in_towers_group(request.node):
        return
    session.stash[_POOL_STARTED] = True
    if releases_to_converge(session.items) and check_prerequisites().ok:
        request.getfixturevalue("tower_pool")


@pytest.fixture(scope="session")
def converged_tower(tower_pool: TowerPool) -> ConvergedTower:
    """One Debian 12 container converged once by ``nomadrig.towers.run(team, name, "apply", options)``.

    A first apply from bare costs 8-19 minutes, so the session pays it once
    (in the background from the session's start, see ``tower_pool``) and every
    test that needs a configured tower shares this one: the tower container
    tests, the Tower provider, ``tower check`` from an installed wheel,
    ``nomadrig up`` through the real engine.

    Yields a ``ConvergedTower``: ``.container`` (DebianContainer), ``.team``
    (the example team with its single tower, named like the example's, e.g.
    ``basement``, at the container), ``.options`` (RunOptions: key, the
    container's variable overrides, runs dir), ``.ssh_key``, ``.release``
    (TowerRelease), ``.first`` (the first apply's RunReport), ``.first_s``,
    ``.download_mb``, ``.wheels_mb``, ``.name``, ``.sh(cmd)`` and
    ``.reapply()``.

    Contract for users: the baseline is the machine as ``.first`` left it with
    ``.team`` and ``.options``. A test that changes the tower (other
    variables, another team, a provider update) must leave it converged to
    that baseline before it ends, pass or fail (e.g. ``.reapply()`` in a
    ``finally``), so that check mode and a second apply still change nothing
    for whoever comes next. Read-only runs (check, verify) need no restoring.
    """
    return tower_pool.get(CONVERGED_RELEASE)
