"""A booted container dressed as a tower: the team file and overrides the tower tests share.

The tower tests, the real-engine tower test and the benchmarks all need the
same thing: the example team, its tower pointed at a container, the nomads
given keys made at test time, and the few variables that differ in a
GPU-less container (the CPU framework path from a local wheel directory).
"""

from __future__ import annotations

import base64
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nomadrig import towers
from nomadrig.team.load import load_team
from nomadrig.team.model import Team, TowerGpu
from tests.harness.container import ContainerSpec, DebianContainer
from tests.harness.ubuntu_standin import REPO_IN_CONTAINER, RUNNING_KERNEL, build_ubuntu_archive, ubuntu_tree_files
from tests.harness.wheels import cpu_jax_wheels

EXAMPLE_TEAM = Path(__file__).resolve().parents[2] / "examples" / "team.yaml"
WHEELS_IN_CONTAINER = "/opt/nomadrig-wheels"


@dataclass(frozen=True)
class TowerRelease:
    """A release a test tower runs, and the GPU stack its archive has for it."""

    codename: str
    os: str
    driver_branch: str
    cuda_version: str
    #: The Debian release whose tree boots dressed as ``os``, with a stand-in archive
    #: (tests/harness/ubuntu_standin.py); empty for Debian itself.
    dressed_from: str = ""

    @property
    def debian(self) -> str:
        """The Debian release that really boots."""
        return self.dressed_from or self.codename


#: Real Debian with Debian's real non-free NVIDIA packages.
DEBIAN_TOWERS = {
    "bookworm": TowerRelease("bookworm", "debian-12", "535", "11.8"),
    "trixie": TowerRelease("trixie", "debian-13", "550", "12.4"),
}
#: Debian 12 dressed as Ubuntu, with stand-in packages under Ubuntu's names (what nomadrig chooses there).
UBUNTU_STANDIN_TOWERS = {
    "jammy": TowerRelease("jammy", "ubuntu-22.04", "580", "11.5", dressed_from="bookworm"),
    "noble": TowerRelease("noble", "ubuntu-24.04", "580", "12.0", dressed_from="bookworm"),
}
TOWER_RELEASES = {**DEBIAN_TOWERS, **UBUNTU_STANDIN_TOWERS}


def wireguard_public_key() -> str:
    """A fresh WireGuard (X25519) public key for a test nomad; the private half is discarded."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    raw = X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def tower_container_spec(release: str) -> ContainerSpec:
    """A container of release with the CPU JAX wheels for its Python mounted read-only.

    A dressed release (Ubuntu) also gets its stand-in archive, built now into a fresh directory,
    bind-mounted, and Ubuntu's os-release.
    """
    tower = TOWER_RELEASES.get(release)
    debian = tower.debian if tower else release
    binds = {str(cpu_jax_wheels(debian)): WHEELS_IN_CONTAINER}
    files: dict[str, str | bytes] = {}
    if tower is not None and tower.dressed_from:
        repo = build_ubuntu_archive(tower.os, Path(tempfile.mkdtemp(prefix=f"nomadrig-{release}-", dir="/var/tmp")))
        binds[str(repo.root)] = REPO_IN_CONTAINER
        files = ubuntu_tree_files(tower.os, repo, debian)
    return ContainerSpec(release=debian, bind_ro=binds, files=files)


def container_team(release: TowerRelease, container: DebianContainer, nomad_key: Path, name: str | None = None) -> Team:
    """The example team with one tower, ``name`` (default: the example's own), at the container's address.

    It connects as the installer-style ``admin`` account (sudo), declares an
    RTX 4090 as a real tower would, and gives two nomads the test SSH key and
    fresh WireGuard keys. The RAM minimum is lowered because the container has
    whatever RAM the CI machine has; the RAM rule has its own tests.
    """
    team = load_team(EXAMPLE_TEAM)
    public = nomad_key.with_suffix(".pub").read_text().strip()
    nomads = [
        n.model_copy(update={"ssh_key": public, "wireguard_public_key": wireguard_public_key()}) for n in team.nomads
    ]
    tower = team.towers[0].model_copy(
        update={
            "name": name or team.towers[0].name,
            "address": container.ip,
            "ssh_user": "admin",
            "os": release.os,
            "gpus": [TowerGpu(model="RTX 4090", count=1)],
            "driver_branch": release.driver_branch,
            "cuda_version": release.cuda_version,
            "frameworks": ["jax"],
            "nomads": [nomads[0].name, nomads[-1].name],
        }
    )
    policy = team.policy.model_copy(update={"tower_min_ram_gb": 1})
    return team.model_copy(update={"nomads": nomads, "towers": [tower], "policy": policy})


def container_overrides(release: TowerRelease | None = None) -> dict[str, Any]:
    """What differs in a GPU-less container from a real tower: the CPU framework path.

    In a dressed release the Python is Debian's, not the one nomadrig picks for the OS, and the running
    kernel is the Ubuntu kernel the stand-in states (the container's own is its host's).
    """
    overrides: dict[str, Any] = {
        "frameworks_device": "cpu",
        "frameworks_packages": ["jax"],
        "frameworks_find_links": WHEELS_IN_CONTAINER,
        "frameworks_no_index": True,
        "verify_require_gpu": False,
    }
    if release is not None and release.dressed_from:
        overrides["frameworks_python"] = ""
        overrides["nvidia_driver_observed_kernel"] = RUNNING_KERNEL[release.os]
    return overrides


#: apt-cacher-ng's access log on the host (epoch|type|size|client|path), read for the download figure.
APT_PROXY_LOG = Path("/var/log/apt-cacher-ng/apt-cacher.log")


def proxy_bytes_for(ip: str, since: float, log: Path = APT_PROXY_LOG) -> int:
    """Bytes the host's apt proxy served to ip since a time: what a first apply downloads from the archive."""
    total = 0
    for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
        fields = line.split("|")
        fresh = fields[0].isdigit() and int(fields[0]) >= since
        if len(fields) >= 5 and fresh and fields[3] == ip and fields[1] == "O":
            total += int(fields[2]) if fields[2].isdigit() else 0
    return total


@dataclass
class ConvergedTower:
    """A booted container after one ``tower apply`` from bare, and what a test needs to use it.

    ``team`` has one tower (named like the example team's) at the container;
    running ``towers.run(team, name, mode, options)`` again reaches the same
    machine with the same variables, so the baseline is exactly what ``first``
    converged to.
    """

    release: TowerRelease
    container: DebianContainer
    team: Team
    options: towers.RunOptions
    ssh_key: Path
    first: towers.RunReport
    first_s: float
    download_mb: float
    wheels_mb: float
    #: `tower check` of the same machine while it was still bare, run just before ``first``.
    bare_check: towers.RunReport | None = None

    @property
    def name(self) -> str:
        """The tower's name in ``team`` (what ``nomadrig tower ... NAME`` takes)."""
        return self.team.towers[0].name

    def sh(self, command: str, timeout: float = 300) -> str:
        """Run a command inside the container (not over SSH); it must succeed."""
        result = self.container.run(command, timeout=timeout)
        assert result.returncode == 0, f"{command}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def packages(self, pattern: str) -> dict[str, tuple[str, str]]:
        """Packages dpkg knows matching a glob: name -> (status abbreviation, version).

        The abbreviation's second letter is the state ("i": installed); the first
        is the wanted action ("i" install, "h" hold).
        """
        listing = self.container.run(f"dpkg-query -W -f='${{db:Status-Abbrev}}|${{Package}}|${{Version}}\\n' '{pattern}'")
        rows = (line.split("|") for line in listing.stdout.splitlines())
        return {row[1]: (row[0].strip(), row[2]) for row in rows if len(row) == 3 and not row[0].startswith("u")}

    def reapply(self) -> towers.RunReport:
        """Apply the baseline team and variables again: how a test that changed the tower restores it."""
        report = towers.run(self.team, self.name, "apply", self.options)
        assert report.succeeded, f"restoring the baseline failed:\n{report.summary()}"
        return report
