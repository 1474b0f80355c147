"""NVIDIA's CUDA repository, added by the cuda_repo role, on a booted Debian 12 against a signed stand-in.

The stand-in models NVIDIA's flat repository as repo-debian.sh of NVIDIA/cuda-repo-management writes it: a
directory per release and architecture (``<base>/debian12/x86_64/``) holding ``Packages``, a ``Release``
headed ``Origin: NVIDIA`` / ``Label: NVIDIA CUDA``, an ``InRelease`` signed with a throwaway key, and that key
as the ``.pub`` file NVIDIA publishes for the release (``3bf863cc.pub``). Its packages are empty ones named like
NVIDIA's (``cuda-drivers-550``, ``cuda-toolkit-12-4`` with a stub ``nvcc``, ``cudnn9-cuda-12``). It is served
over HTTP from inside the container (python's http.server on 127.0.0.1, apt told to reach it directly), so the
role's existence check, the key download and apt all take their real paths. A cuda-keyring-style ``.list`` with
another ``signed-by`` points at it from the start, as on a tower where someone followed NVIDIA's instructions.

What this proves: the check before anything is written (404, no answer, a missing ``file:`` repository, and a
release missing from NVIDIA's list), the disabling of the other entry so that ``apt-get update`` works (and,
as a control, that apt refuses to update with both), the pin (apt gives the repository priority 600 by its
label), check mode and a second run, that nvidia_driver and cuda include the one role (added once per play)
and take their packages from it, and that the distro channel's ``absent`` removes it. What it does not:
that NVIDIA's real repository, key or packages install or work (no GPU, empty packages, a local server that
answers what NVIDIA's CDN would), nor the check through a proxy or over HTTPS.

Only the role's own small playbooks run (through ``nomadrig.towers.run`` with a test project that holds
them), on one container for the whole module; the tests run in file order.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from nomadrig import towers
from nomadrig.team.model import Team
from tests.harness import ContainerSpec, DebianContainer
from tests.harness.fixtures import WORK_ROOT
from tests.harness.standin_repo import STANDIN_TAG, build_signed_repo, empty_package
from tests.harness.towers import DEBIAN_TOWERS, container_team

pytestmark = [pytest.mark.container, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
RELEASE = DEBIAN_TOWERS["bookworm"]
PORT = 8642
BASE = f"http://127.0.0.1:{PORT}"
URL = f"{BASE}/debian12/x86_64/"
SERVED = "/srv/nomadrig-cuda-standin"
SOURCES = "/etc/apt/sources.list.d/nomadrig-cuda.sources"
PIN = "/etc/apt/preferences.d/nomadrig-cuda"
KEY = "/etc/apt/keyrings/nomadrig-cuda.asc"
#: What NVIDIA's cuda-keyring package writes: its own keyring and a one-line entry of the same repository.
KEYRING_LIST = "/etc/apt/sources.list.d/cuda-debian12-x86_64.list"
KEYRING_GPG = "/usr/share/keyrings/cuda-archive-keyring.gpg"
KEYRING_ENTRY = f"deb [signed-by={KEYRING_GPG}] {URL} /\n"
STANDIN_VERSIONS = {
    "cuda-drivers-550": f"550.163.01-1+{STANDIN_TAG}1",
    "cuda-toolkit-12-4": f"12.4.1-1+{STANDIN_TAG}1",
    "cudnn9-cuda-12": f"9.1.0.70-1+{STANDIN_TAG}1",
}
#: The GPU roles' variables for NVIDIA's repository, as the install plan would set them for it.
GPU_OVERRIDES = {"nvidia_driver_channel": "cuda_repo", "cuda_channel": "cuda_repo", "nvidia_driver_branch": "550",
                 "nvidia_driver_kernel_modules": "proprietary", "cuda_version": "12.4"}

PLAY_HEAD = """- name: {name}
  hosts: "{{{{ nomadrig_hosts | default('towers') }}}}"
  become: true
  gather_facts: true
  gather_subset: [min]
"""
PLAYBOOKS = {
    "cuda_repo.yml": PLAY_HEAD.format(name="Add NVIDIA's CUDA repository") + "  roles:\n    - role: cuda_repo\n",
    "gpu_roles.yml": PLAY_HEAD.format(name="Take the driver and the toolkit from NVIDIA's repository") + """  tasks:
    - name: Load the driver role's values for this distribution, as its main entry does first
      ansible.builtin.include_role:
        name: nvidia_driver
        tasks_from: os_vars
    - name: Prepare the driver packages from NVIDIA's CUDA repository
      ansible.builtin.include_role:
        name: nvidia_driver
        tasks_from: cuda_repo
    - name: Install the CUDA toolkit from NVIDIA's CUDA repository
      ansible.builtin.include_role:
        name: cuda
        tasks_from: cuda_repo
""",
    "cuda_repo_absent.yml": PLAY_HEAD.format(name="Remove NVIDIA's CUDA repository") + """  tasks:
    - name: Remove NVIDIA's CUDA repository as the distro channel does
      ansible.builtin.include_role:
        name: cuda_repo
        tasks_from: absent
""",
}


@dataclass
class Tower:
    """The booted container, the team and options that reach it, and the figures measured on the way."""

    container: DebianContainer
    team: Team
    options: towers.RunOptions
    seconds: dict[str, float] = field(default_factory=dict)

    def sh(self, command: str, timeout: float = 300) -> str:
        """Run a command inside the container (not over SSH); it must succeed."""
        result = self.container.run(command, timeout=timeout)
        assert result.returncode == 0, f"{command}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def exists(self, path: str) -> bool:
        return (self.container.rootfs / path.lstrip("/")).exists()

    def run(self, label: str, playbook: str = "cuda_repo.yml", mode: towers.Mode = "apply",
            **overrides: Any) -> towers.RunReport:
        options = replace(self.options, playbook=playbook, overrides={**self.options.overrides, **overrides})
        started = time.monotonic()
        report = towers.run(self.team, self.team.towers[0].name, mode, options)
        self.seconds[label] = round(time.monotonic() - started, 1)
        print(f"\n{label}: {self.seconds[label]:.0f} s\n{report.summary()}")
        return report


def standin_packages(out: Path) -> list[Path]:
    """Empty packages named like NVIDIA's; the toolkit carries a stub nvcc where the cuda role looks for it."""
    out.mkdir(parents=True)
    nvcc = {"/usr/local/cuda-12.4/bin/nvcc": "#!/bin/sh\necho 'stand-in nvcc: Cuda compilation tools, release 12.4'\n"}
    return [empty_package(out, name, version, files=nvcc if name.startswith("cuda-toolkit") else None)
            for name, version in STANDIN_VERSIONS.items()]


def publish_standin(container: DebianContainer, work: Path) -> None:
    """Build NVIDIA's stand-in repository into the container and serve it on 127.0.0.1 over HTTP."""
    root = container.rootfs / SERVED.lstrip("/") / "debian12" / "x86_64"
    repo = build_signed_repo(standin_packages(work / "debs"), root, work / "gnupg",
                             origin="NVIDIA", label="NVIDIA CUDA")
    armored = subprocess.run(["gpg", "--batch", "--homedir", str(work / "gnupg"), "--armor", "--export"],
                             check=True, capture_output=True).stdout
    (root / "3bf863cc.pub").write_bytes(armored)  # the key file NVIDIA publishes for debian12
    # cuda-keyring's keyring and its entry of the same repository, with another signed-by than the role's.
    shutil.copy(repo.keyring, container.rootfs / KEYRING_GPG.lstrip("/"))
    (container.rootfs / KEYRING_LIST.lstrip("/")).write_text(KEYRING_ENTRY)
    # The container reaches the world through the host's apt proxy; the stand-in is on its own loopback.
    (container.rootfs / "etc/apt/apt.conf.d/02nomadrig-cuda-standin").write_text(
        'Acquire::http::Proxy::127.0.0.1 "DIRECT";\n')
    container.run(["systemd-run", "--unit=nomadrig-cuda-standin", "/usr/bin/python3", "-m", "http.server", str(PORT),
                   "--bind", "127.0.0.1", "--directory", SERVED], check=True)
    probe = f"import urllib.request; urllib.request.urlopen('{URL}InRelease', timeout=2)"
    for _ in range(50):
        if container.run(["/usr/bin/python3", "-c", probe]).returncode == 0:
            return
        time.sleep(0.2)
    raise AssertionError(f"the stand-in repository does not answer at {URL}")


@pytest.fixture(scope="module")
def tower(container_prerequisites: None, container_ssh_key: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tower]:
    started = time.monotonic()
    workdir = WORK_ROOT / f"cuda-repo-{int(time.time())}"
    container = DebianContainer(ContainerSpec(release=RELEASE.codename), workdir, container_ssh_key)
    container.boot(timeout=120)
    seconds: dict[str, float] = {}
    try:
        # A tower has package lists (the bare tree has none): the role installs python3-debian from them.
        container.run("apt-get update -q", timeout=600, check=True)
        work = tmp_path_factory.mktemp("cuda-standin")
        publish_standin(container, work)
        project = work / "project"
        (project / "playbooks").mkdir(parents=True)
        (project / "roles").symlink_to(REPO / "roles")
        for name, text in PLAYBOOKS.items():
            (project / "playbooks" / name).write_text(text)
        options = towers.RunOptions(
            ssh_key_file=container_ssh_key, overrides={"cuda_repo_base": BASE},
            runs_dir=workdir.with_name(workdir.name + "-runs"), project_root=project, strict_host_keys=False,
            fetch_public_key=False,
        )
        seconds["boot and stand-in"] = round(time.monotonic() - started, 1)
        yield Tower(container, container_team(RELEASE, container, container_ssh_key), options, seconds)
    finally:
        container.close()
        shutil.rmtree(workdir, ignore_errors=True)
        print(f"\ncuda_repo container figures (s): {seconds}, module {time.monotonic() - started:.0f} s")


def assert_nothing_written(tower: Tower) -> None:
    assert not tower.exists(SOURCES) and not tower.exists(PIN) and not tower.exists(KEY)
    assert tower.sh(f"cat {KEYRING_LIST}") == KEYRING_ENTRY, "the other entry is left alone when nothing is added"


def test_a_dry_run_on_the_bare_tower_says_what_it_would_disable_and_writes_nothing(tower: Tower) -> None:
    report = tower.run("check, bare", mode="check")
    assert report.succeeded, report.summary()
    notes = [note for note in report.notes if note.startswith("NOTE: dry run: would disable")]
    assert notes and KEYRING_LIST in notes[0] and URL in notes[0], report.notes
    assert_nothing_written(tower)


@pytest.mark.parametrize(
    ("case", "overrides", "words"),
    [
        # NVIDIA's list without debian12 and a base without it: Debian 12 as a release NVIDIA does not publish.
        ("unpublished",
         {"cuda_repo_base": f"{BASE}/elsewhere", "cuda_repo_release_keys": {"ubuntu2404": "3bf863cc.pub"}},
         [f"{BASE}/elsewhere/debian12/x86_64/ has no InRelease or Release file (HTTP 404)",
          "NVIDIA publishes no CUDA repository for Debian 12 on x86_64, debian12", "it publishes ubuntu2404",
          "Fix: set the tower's driver_channel: distro"]),
        ("wrong mirror", {"cuda_repo_base": f"{BASE}/elsewhere"},
         ["HTTP 404", "NVIDIA publishes debian12, so this URL is not its repository",
          "Fix: point cuda_repo_base (or cuda_repo_url)"]),
        ("no answer", {"cuda_repo_base": "http://127.0.0.1:9"},
         ["could not read http://127.0.0.1:9/debian12/x86_64/InRelease: no answer", "Connection refused", "Fix:"]),
        ("missing file: repository", {"cuda_repo_url": f"file://{SERVED}/elsewhere/"},
         [f"file://{SERVED}/elsewhere/ has no InRelease or Release file (no such file on the tower)"]),
    ],
    ids=["unpublished", "wrong-mirror", "no-answer", "missing-file"],
)
def test_a_repository_that_is_not_there_fails_with_the_fix_and_writes_nothing(
    tower: Tower, case: str, overrides: dict[str, Any], words: list[str]
) -> None:
    report = tower.run(f"fails: {case}", **overrides)
    assert not report.succeeded, report.summary()
    [failure] = report.failed_tasks
    assert failure["task"].startswith("cuda_repo : Stop where"), failure
    for text in words:
        assert text in failure["msg"], failure["msg"]
    assert report.changed_tasks == [], report.summary()
    assert_nothing_written(tower)


@pytest.fixture(scope="module")
def applied(tower: Tower) -> towers.RunReport:
    return tower.run("first apply")


def test_the_other_entry_of_the_repository_is_disabled_and_apt_updates(tower: Tower, applied: towers.RunReport) -> None:
    assert applied.succeeded, applied.summary()
    listing = tower.sh(f"cat {KEYRING_LIST}")
    assert listing.startswith(f"# {KEYRING_ENTRY.rstrip()}") and "disabled by nomadrig" in listing, listing
    notes = [note for note in applied.notes if note.startswith("NOTE: disabled the other apt entries")]
    assert notes and f"{KEYRING_LIST} (its lines commented out)" in notes[0], applied.notes
    update = tower.container.run("apt-get update -q", timeout=600)
    assert update.returncode == 0 and "Conflicting" not in update.stderr, update.stderr
    # The control: with the entry back, apt refuses to update, as it did on towers before the fix.
    again = tower.container.rootfs / "etc/apt/sources.list.d/cuda-keyring-again.list"
    again.write_text(KEYRING_ENTRY)
    try:
        refused = tower.container.run("apt-get update -q", timeout=600)
    finally:
        again.unlink()
    assert refused.returncode != 0 and "Conflicting values set for option Signed-By" in refused.stderr, refused.stderr


def test_the_repository_is_signed_by_its_key_and_pinned_at_600(tower: Tower, applied: towers.RunReport) -> None:
    sources = tower.sh(f"cat {SOURCES}")
    assert f"URIs: {URL}" in sources and f"Signed-By: {KEY}" in sources and "Suites: /" in sources, sources
    assert tower.sh(f"stat -c %a {PIN}").strip() == "644"
    pin = tower.sh(f"cat {PIN}")
    assert "Package: *\nPin: release l=NVIDIA CUDA\nPin-Priority: 600\n" in pin and pin.startswith("#"), pin
    policy = tower.sh("apt-cache policy cuda-toolkit-12-4")
    assert f"Candidate: {STANDIN_VERSIONS['cuda-toolkit-12-4']}" in policy, policy
    assert re.search(rf"(?m)^ +600 {re.escape(URL.rstrip('/'))}/? +Packages$", policy), policy
    # The distribution's archive keeps the default priority.
    assert re.search(r"(?m)^ +500 http://\S+/debian bookworm/main amd64 Packages$", tower.sh("apt-cache policy")), "500"


def test_a_second_run_changes_nothing(tower: Tower, applied: towers.RunReport) -> None:
    report = tower.run("second apply")
    assert report.succeeded, report.summary()
    assert report.changed_tasks == [], report.summary()
    assert not [note for note in report.notes if "disable" in note], report.notes


def test_the_driver_and_the_toolkit_take_their_packages_from_the_one_repository(
    tower: Tower, applied: towers.RunReport
) -> None:
    report = tower.run("nvidia_driver and cuda include cuda_repo", "gpu_roles.yml", **GPU_OVERRIDES)
    assert report.succeeded, report.summary()
    assert report.changed_tasks == ["cuda : Install the CUDA toolkit and cuDNN"], report.summary()
    installed = tower.sh("dpkg-query -W -f='${Package} ${Version}\\n' cuda-toolkit-12-4 cudnn9-cuda-12")
    wanted = [f"{name} {STANDIN_VERSIONS[name]}" for name in ("cuda-toolkit-12-4", "cudnn9-cuda-12")]
    assert installed.splitlines() == wanted, installed
    again = tower.run("nvidia_driver and cuda again", "gpu_roles.yml", **GPU_OVERRIDES)
    assert again.succeeded and again.changed_tasks == [], again.summary()


def test_the_distro_channel_removes_the_repository_its_key_and_its_pin(tower: Tower, applied: towers.RunReport) -> None:
    report = tower.run("absent", "cuda_repo_absent.yml")
    assert report.succeeded, report.summary()
    assert not tower.exists(SOURCES) and not tower.exists(KEY) and not tower.exists(PIN)
    policy = tower.sh("apt-cache policy cuda-drivers-550")
    assert "Candidate: (none)" in policy or policy.strip() == "", policy
