"""pytest fixtures for booted Debian containers.

Load with ``pytest_plugins = ["tests.harness.fixtures"]`` in tests/conftest.py.

- ``debian_release``: parametrised over bookworm (Debian 12) and trixie (13).
- ``debian_container``: one booted container of that release, default spec.
- ``boot_container``: a factory for custom specs (extra packages, NoCloud
  seed, read-only bind mounts); everything it booted is torn down at the end
  of the test, pass or fail.
- ``container_ssh_key``: the per-session test key pair (generated, in a tmp dir).

Without the prerequisites the tests skip with the reason; with ``CI`` set they
fail instead, so a CI machine cannot silently skip the real tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness.container import ContainerSpec, DebianContainer
from tests.harness.prereqs import check_prerequisites, in_ci
from tests.harness.rootfs import RELEASES

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
