"""The Ubuntu task files, run end to end: a Debian 12 container dressed as Ubuntu 22.04 and 24.04.

The stand-in (tests/harness/ubuntu_standin.py says exactly what it proves and
what it does not) is a booted Debian 12 whose os-release says Ubuntu, plus a
signed local archive of empty packages with Ubuntu's names, versions and
dependency shapes for the driver branches and the CUDA toolkit that
nomadrig's compatibility data lists for the release, including Ubuntu 24.04's
transitional 535 packages, and Canonical's signed precompiled modules (LRM) for
the kernels in ``SIGNED_KERNELS``. The tower is the example's RTX 4090 on the
release, with the branch, kernel modules and toolkit nomadrig chooses for it
(580 open, CUDA 11.5 on 22.04 and 12.0 on 24.04, the archive's own). The 24.04
tower runs a kernel the archive has signed modules for and takes them; the
22.04 tower's running kernel has none yet, so it takes DKMS, and with Secure
Boot on (a stand-in SecureBoot variable) it is refused with the fix.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from nomadrig import towers
from tests.harness.tower_pool import TowerPool
from tests.harness.towers import UBUNTU_STANDIN_TOWERS, ConvergedTower
from tests.harness.ubuntu_standin import RUNNING_KERNEL, SIGNED_KERNELS, STANDIN_TAG

#: Where a test writes its stand-in UEFI firmware directory inside the container (tower_facts_efi_dir).
EFI_DIR = "/var/lib/nomadrig-test-efi"
SECURE_BOOT_VARIABLE = "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"

pytestmark = [pytest.mark.container, pytest.mark.slow]


@pytest.fixture(scope="module", params=sorted(UBUNTU_STANDIN_TOWERS), ids=lambda r: UBUNTU_STANDIN_TOWERS[r].os)
def applied(request: pytest.FixtureRequest, tower_pool: TowerPool) -> ConvergedTower:
    """A dressed container of each Ubuntu release after its first apply (started when the session began)."""
    return tower_pool.get(request.param)


def installed(tower: ConvergedTower, pattern: str) -> dict[str, str]:
    """Fully installed packages matching a glob: name -> version."""
    return {name: version for name, (status, version) in tower.packages(pattern).items() if status.startswith("ii")}


def test_ansible_sees_ubuntu_and_the_first_apply_succeeds(applied: ConvergedTower) -> None:
    assert applied.first.succeeded, applied.first.summary()
    # The tree says Ubuntu (the stand-in's dress); the driver package below shows the Ubuntu task files ran.
    facts = applied.container.run("cat /etc/os-release").stdout
    assert f'VERSION_ID="{applied.release.os.removeprefix("ubuntu-")}"' in facts


def takes_signed_modules(tower: ConvergedTower) -> bool:
    """Whether the stand-in archive has Canonical's signed modules for the kernel the tower states it runs."""
    return RUNNING_KERNEL[tower.release.os] in SIGNED_KERNELS[tower.release.os]


def with_secure_boot(tower: ConvergedTower, on: bool) -> str:
    """Write a stand-in SecureBoot variable into the container (4 attribute bytes, then 1 = on); its EFI dir."""
    variable = tower.container.rootfs / EFI_DIR.lstrip("/") / "efivars" / SECURE_BOOT_VARIABLE
    variable.parent.mkdir(parents=True, exist_ok=True)
    variable.write_bytes(bytes([0x06, 0, 0, 0, 1 if on else 0]))  # NV + boot service + runtime access
    return EFI_DIR


def run_with(tower: ConvergedTower, **overrides: Any) -> towers.RunReport:
    options = replace(tower.options, overrides={**tower.options.overrides, **overrides})
    return towers.run(tower.team, tower.name, "apply", options)


def last_apt_transaction(tower: ConvergedTower) -> str:
    """The last entry of apt's history log: one entry is one apt transaction."""
    history = (tower.container.rootfs / "var/log/apt/history.log").read_text()
    return history.strip().split("\n\n")[-1]


def test_the_ubuntu_task_files_install_the_server_driver_and_the_archive_toolkit(applied: ConvergedTower) -> None:
    if takes_signed_modules(applied):
        pytest.skip("this release's tower takes Canonical's signed modules (test below), not the DKMS driver")
    branch = applied.release.driver_branch
    drivers = installed(applied, "nvidia-*")
    wanted = f"nvidia-driver-{branch}-server-open"
    assert wanted in drivers, f"{wanted} not installed; NVIDIA packages: {drivers}"
    assert drivers[wanted].startswith(f"{branch}.") and STANDIN_TAG in drivers[wanted], drivers
    # Its exact-version dependencies came with it; nothing of another branch or of Debian's driver did.
    assert f"nvidia-dkms-{branch}-server-open" in drivers and f"nvidia-utils-{branch}-server" in drivers, drivers
    assert all(version.startswith(f"{branch}.") for name, version in drivers.items() if name != "nvidia-cuda-toolkit"), drivers
    assert "nvidia-driver" not in drivers and f"nvidia-driver-{branch}-server" not in drivers, drivers
    toolkit = drivers.get("nvidia-cuda-toolkit", "")
    assert toolkit.startswith(f"{applied.release.cuda_version}.") and STANDIN_TAG in toolkit, drivers
    # Ubuntu's packages carry the branch in their name: nothing is held.
    assert applied.sh("apt-mark showhold").split() == []


def test_signed_modules_and_no_dkms_are_installed_where_the_archive_has_them_for_the_running_kernel(
        applied: ConvergedTower) -> None:
    """ubuntu-drivers' preference: Canonical's precompiled modules whenever they exist, Secure Boot or not."""
    if not takes_signed_modules(applied):
        pytest.skip("the stand-in archive has no signed modules for this tower's running kernel")
    branch, kernel = applied.release.driver_branch, RUNNING_KERNEL[applied.release.os]
    packages = {**installed(applied, "nvidia-*"), **installed(applied, "linux-modules-nvidia-*")}
    wanted = [f"linux-modules-nvidia-{branch}-server-open-generic", f"linux-modules-nvidia-{branch}-server-open-{kernel}",
              f"nvidia-headless-no-dkms-{branch}-server-open", f"nvidia-utils-{branch}-server",
              f"nvidia-compute-utils-{branch}-server", f"nvidia-kernel-common-{branch}-server"]
    assert [name for name in wanted if name not in packages] == [], packages
    assert [name for name in packages if "dkms" in name and "no-dkms" not in name] == [], packages
    assert [name for name in packages if name.startswith("nvidia-driver-")] == [], packages
    assert applied.sh("apt-mark showhold").split() == []


def test_second_apply_changes_nothing(applied: ConvergedTower) -> None:
    report = towers.run(applied.team, applied.name, "apply", applied.options)
    assert report.succeeded, report.summary()
    assert report.changed_tasks == [], report.summary()


def test_check_of_the_bare_machine_succeeds_and_says_what_it_cannot_check_yet(applied: ConvergedTower) -> None:
    """`tower check` ran on the bare container just before the first apply (tests/harness/tower_pool.py)."""
    check = applied.bare_check
    assert check is not None and check.succeeded, check.summary() if check else "no bare check"
    assert "nvidia_driver : Install the NVIDIA driver packages" in check.changed_tasks, check.summary()
    assert any(note.startswith("NOTE: dry run: nvidia-cuda-toolkit is not installed yet") for note in check.notes), check.notes


def test_a_transitional_branch_is_refused_with_the_fix_and_nothing_is_installed(tower_pool: TowerPool) -> None:
    """Ubuntu 24.04 keeps 535 only as transitional packages that pull 580 (22.04 still has a real 535)."""
    noble = tower_pool.get("noble")
    options = replace(noble.options, overrides={**noble.options.overrides, "nvidia_driver_branch": "535"})
    report = towers.run(noble.team, noble.name, "apply", options)
    assert not report.succeeded
    [failure] = report.failed_tasks
    assert failure["task"] == "nvidia_driver : Refuse a transitional package that installs another driver branch"
    message = failure["msg"]
    assert "nvidia-driver-535-server-open is a transitional package" in message, message
    assert "nvidia-driver-580-server-open" in message and "Fix:" in message, message
    assert not [name for name in installed(noble, "*nvidia*535*")], installed(noble, "*nvidia*")
    assert not [task for task in report.changed_tasks if task.startswith("nvidia_driver :")], report.summary()


def test_with_secure_boot_on_the_signed_modules_stay_and_a_run_changes_nothing(tower_pool: TowerPool) -> None:
    noble = tower_pool.get("noble")
    assert takes_signed_modules(noble)
    report = run_with(noble, tower_facts_efi_dir=with_secure_boot(noble, on=True))
    assert report.succeeded, report.summary()
    assert report.changed_tasks == [], report.summary()
    assert f"linux-modules-nvidia-580-server-open-{RUNNING_KERNEL['ubuntu-24.04']}" in installed(noble, "linux-modules-*")


def test_secure_boot_on_without_signed_modules_for_the_running_kernel_is_refused_with_the_fix(
        tower_pool: TowerPool) -> None:
    jammy = tower_pool.get("jammy")
    assert not takes_signed_modules(jammy)
    before = installed(jammy, "*nvidia*")
    report = run_with(jammy, tower_facts_efi_dir=with_secure_boot(jammy, on=True))
    assert not report.succeeded
    [failure] = report.failed_tasks
    assert failure["task"] == "nvidia_driver : Refuse kernel modules that cannot load", report.summary()
    message = failure["msg"]
    assert message.startswith("Secure Boot: Secure Boot is enabled"), message
    assert f"no linux-modules-nvidia-580-server-open-{RUNNING_KERNEL['ubuntu-22.04']}" in message, message
    assert SIGNED_KERNELS["ubuntu-22.04"][-1] in message and "Fix:" in message and "mokutil" in message, message
    assert not [task for task in report.changed_tasks if task.startswith("nvidia_driver :")], report.summary()
    assert installed(jammy, "*nvidia*") == before


def test_secure_boot_on_with_the_dkms_key_enrolled_keeps_dkms_and_changes_nothing(tower_pool: TowerPool) -> None:
    """The refusal's MOK fix: the team says the key DKMS signs with is enrolled (nvidia_driver_mok_enrolled)."""
    jammy = tower_pool.get("jammy")
    report = run_with(jammy, tower_facts_efi_dir=with_secure_boot(jammy, on=True), nvidia_driver_mok_enrolled=True)
    assert report.succeeded, report.summary()
    assert report.changed_tasks == [], report.summary()
    assert "nvidia-dkms-580-server-open" in installed(jammy, "nvidia-dkms-*")


def test_booting_a_kernel_with_signed_modules_switches_from_dkms_in_one_transaction_and_back(
        tower_pool: TowerPool) -> None:
    """The fix of the refusal above: the tower boots the kernel Canonical signed modules for."""
    jammy = tower_pool.get("jammy")
    signed_kernel = SIGNED_KERNELS["ubuntu-22.04"][-1]
    efi = with_secure_boot(jammy, on=True)
    try:
        switched = run_with(jammy, tower_facts_efi_dir=efi, nvidia_driver_observed_kernel=signed_kernel)
        assert switched.succeeded, switched.summary()
        assert "nvidia_driver : Switch between Canonical's signed modules and DKMS in one apt transaction" \
            in switched.changed_tasks, switched.summary()
        transaction = last_apt_transaction(jammy)
        assert f"linux-modules-nvidia-580-server-open-{signed_kernel}" in transaction.split("Install:")[1], transaction
        assert "nvidia-dkms-580-server-open" in transaction.split("Remove:")[1], transaction
        packages = {**installed(jammy, "nvidia-*"), **installed(jammy, "linux-modules-nvidia-*")}
        assert f"linux-modules-nvidia-580-server-open-{signed_kernel}" in packages, packages
        assert [n for n in packages if n.startswith(("nvidia-dkms-", "nvidia-driver-"))] == [], packages
        again = run_with(jammy, tower_facts_efi_dir=efi, nvidia_driver_observed_kernel=signed_kernel)
        assert again.succeeded and again.changed_tasks == [], again.summary()
    finally:
        back = jammy.reapply()  # Secure Boot off (the container's firmware is not read), the running kernel again
    assert "nvidia_driver : Switch between Canonical's signed modules and DKMS in one apt transaction" \
        in back.changed_tasks, back.summary()
    transaction = last_apt_transaction(jammy)
    assert "nvidia-dkms-580-server-open" in transaction.split("Install:")[1], transaction
    assert f"linux-modules-nvidia-580-server-open-{signed_kernel}" in transaction.split("Remove:")[1], transaction
    assert installed(jammy, "linux-modules-nvidia-*") == {}
    assert "nvidia-dkms-580-server-open" in installed(jammy, "nvidia-dkms-*")
