"""Ubuntu's NVIDIA kernel modules: Canonical's signed precompiled ones (LRM), DKMS, or a refusal with the fix.

What a user relies on: a tower with UEFI Secure Boot on gets modules its kernel will load, or is told
before anything is installed what to change; a tower's kernel release never reaches a package name
unless it is a kernel release. Each case names the document its package names come from:

* [pkgs-595] packages.ubuntu.com/resolute/kernel/linux-modules-nvidia-595-server-7.0.0-30-generic
  (source linux-restricted-modules; similar packages ...-580-server-open-7.0.0-30-generic, ...-generic-64k);
* [pkgs-nvidia] packages.ubuntu.com/resolute-updates/kernel/linux-modules-nvidia-580-server-open-nvidia:
  depends on linux-modules-nvidia-580-server-open-7.0.0-1016-nvidia (= 7.0.0-1016.16+3); similar packages
  ...-server-open-aws, -azure, -gcp, -generic, -lowlatency, -oracle;
* [pkgs-hwe] packages.ubuntu.com/resolute-updates/kernel/linux-modules-nvidia-580-open-generic: similar
  packages ...-580-open-generic-hwe-22.04, ...-580-server-open-generic-5.15 / -6.8;
* [operator] NVIDIA GPU Operator, "Installing Precompiled and Canonical Signed Drivers on Ubuntu 20.04 and
  22.04": linux-modules-nvidia-${DRIVER_BRANCH}-server-${KERNEL_VERSION}, nvidia-utils-${DRIVER_BRANCH}-server,
  nvidia-compute-utils-${DRIVER_BRANCH}-server;
* [no-dkms] packages.ubuntu.com/noble-updates/nvidia-headless-no-dkms-470-server, "NVIDIA headless
  metapackage - no DKMS"; nvidia-headless-no-dkms-<B>-server-open for the open kernel module;
* [ubuntu-drivers] canonical/ubuntu-drivers-common, UbuntuDrivers/detect.py (get_linux_modules_metapackage):
  linux-modules-nvidia-<B>-<flavour of the installed linux-image metapackage>, then the ABI package;
* [efivarfs] Linux Documentation/filesystems/efivarfs.rst: "the first 4 bytes of the output are not the real
  EFI variable data, but the variable attributes (in little-endian format)".
"""

from __future__ import annotations

import base64
import importlib.util
from pathlib import Path

import pytest

from nomadrig.compat.kernel_modules import (
    ModulesPlan,
    ModulesRefusal,
    choose_ubuntu_modules,
    parse_ubuntu_kernel,
    secure_boot_state,
)

REPO = Path(__file__).resolve().parents[1]


def userspace(branch: str, flavour: str = "open") -> set[str]:
    """[no-dkms] + [operator]: the userspace that pulls no DKMS."""
    suffix = "-open" if flavour == "open" else ""
    return {f"nvidia-headless-no-dkms-{branch}-server{suffix}", f"nvidia-utils-{branch}-server",
            f"nvidia-compute-utils-{branch}-server"}


#: [pkgs-595] and [pkgs-hwe]: what Ubuntu 26.04's archive lists around kernel 7.0.0-30-generic.
RESOLUTE = {
    "linux-modules-nvidia-595-server-7.0.0-30-generic", "linux-modules-nvidia-595-server-open-7.0.0-30-generic",
    "linux-modules-nvidia-580-server-7.0.0-30-generic", "linux-modules-nvidia-580-server-open-7.0.0-30-generic",
    "linux-modules-nvidia-580-server-7.0.0-30-generic-64k", "linux-modules-nvidia-580-server-open-generic",
    "linux-modules-nvidia-595-server-generic", "nvidia-driver-580-server-open", "nvidia-driver-595-server",
} | userspace("580") | userspace("595", "proprietary")


# ------------------------------------------------------------------ the running kernel


@pytest.mark.parametrize(("release", "flavour"), [
    ("6.8.0-45-generic", "generic"),        # the brief's example, Ubuntu 24.04's GA line
    ("5.15.0-1051-aws", "aws"),             # [pkgs-nvidia] lists ...-server-open-aws
    ("7.0.0-30-generic-64k", "generic-64k"),  # [pkgs-595] similar package ...-7.0.0-30-generic-64k
    ("7.0.0-1016-nvidia", "nvidia"),        # [pkgs-nvidia]
    ("6.8.0-1015-gcp", "gcp"), ("6.8.0-1020-azure", "azure"), ("6.8.0-1013-oracle", "oracle"),
    ("6.8.0-45-lowlatency", "lowlatency"),  # [pkgs-nvidia] similar packages
])
def test_the_flavour_is_read_from_an_ubuntu_kernel_release(release: str, flavour: str) -> None:
    kernel = parse_ubuntu_kernel(release)
    assert kernel is not None and kernel.flavour == flavour and kernel.release == release


@pytest.mark.parametrize("release", ["6.18.44-fc-v1098", "6.8.0-generic", "6.8-45-generic", "", "6.8.0-45-GENERIC"])
def test_a_kernel_that_is_not_ubuntus_has_no_flavour(release: str) -> None:
    assert parse_ubuntu_kernel(release) is None


# ------------------------------------------------------------------ the choice


def test_signed_modules_are_chosen_where_the_archive_has_them_for_the_running_kernel() -> None:
    """[pkgs-595] + [operator]: branch 595 proprietary on kernel 7.0.0-30-generic, Secure Boot on."""
    plan = choose_ubuntu_modules("595", "proprietary", "7.0.0-30-generic", "enabled", RESOLUTE,
                                 installed={"linux-image-generic", "linux-image-7.0.0-30-generic"})
    assert isinstance(plan, ModulesPlan) and plan.path == "precompiled"
    assert plan.packages == ("linux-modules-nvidia-595-server-generic", "linux-modules-nvidia-595-server-7.0.0-30-generic",
                             "nvidia-headless-no-dkms-595-server", "nvidia-utils-595-server",
                             "nvidia-compute-utils-595-server")
    assert not any("dkms" in p and "no-dkms" not in p for p in plan.packages), plan.packages
    assert plan.other_path_prefixes == ("nvidia-driver-595-server", "nvidia-dkms-595-server")


@pytest.mark.parametrize("secure_boot", ["disabled", "unknown"])
def test_signed_modules_are_preferred_even_without_secure_boot(secure_boot: str) -> None:
    """[ubuntu-drivers]: ubuntu-drivers takes the precompiled package whenever it exists."""
    plan = choose_ubuntu_modules("580", "open", "7.0.0-30-generic", secure_boot, RESOLUTE)
    assert isinstance(plan, ModulesPlan) and plan.path == "precompiled"
    assert "linux-modules-nvidia-580-server-open-7.0.0-30-generic" in plan.packages
    assert "nvidia-headless-no-dkms-580-server-open" in plan.packages


def test_the_flavour_metapackage_follows_the_installed_hwe_kernel_metapackage() -> None:
    """[pkgs-hwe] + [ubuntu-drivers]: an HWE tower gets -generic-hwe-22.04, never the GA line's -generic."""
    offered = {"linux-modules-nvidia-580-server-open-6.8.0-45-generic", "linux-modules-nvidia-580-server-open-generic",
               "linux-modules-nvidia-580-server-open-generic-hwe-22.04"} | userspace("580")
    plan = choose_ubuntu_modules("580", "open", "6.8.0-45-generic", "enabled", offered,
                                 installed={"linux-image-generic-hwe-22.04", "linux-image-6.8.0-45-generic"})
    assert isinstance(plan, ModulesPlan)
    assert plan.packages[:2] == ("linux-modules-nvidia-580-server-open-generic-hwe-22.04",
                                 "linux-modules-nvidia-580-server-open-6.8.0-45-generic")


def test_a_cloud_kernel_gets_its_own_flavour_metapackage() -> None:
    """[pkgs-nvidia]: the nvidia flavour's metapackage depends on ...-7.0.0-1016-nvidia."""
    offered = {"linux-modules-nvidia-580-server-open-7.0.0-1016-nvidia", "linux-modules-nvidia-580-server-open-nvidia",
               "linux-modules-nvidia-580-server-open-generic"} | userspace("580")
    plan = choose_ubuntu_modules("580", "open", "7.0.0-1016-nvidia", "enabled", offered)
    assert isinstance(plan, ModulesPlan)
    assert plan.packages[:2] == ("linux-modules-nvidia-580-server-open-nvidia",
                                 "linux-modules-nvidia-580-server-open-7.0.0-1016-nvidia")
    assert plan.notes == ()


def test_without_a_flavour_metapackage_only_the_running_kernels_modules_come_and_the_run_says_so() -> None:
    offered = {"linux-modules-nvidia-580-server-open-7.0.0-30-generic"} | userspace("580")
    plan = choose_ubuntu_modules("580", "open", "7.0.0-30-generic", "enabled", offered)
    assert isinstance(plan, ModulesPlan) and plan.packages[0] == "linux-modules-nvidia-580-server-open-7.0.0-30-generic"
    assert "newer kernel gets no NVIDIA modules" in plan.notes[0]


def test_the_other_flavours_signed_modules_do_not_count() -> None:
    """[pkgs-595]: 7.0.0-30-generic-64k has proprietary 580 modules only; an open tower on it gets DKMS."""
    plan = choose_ubuntu_modules("580", "open", "7.0.0-30-generic-64k", "disabled", RESOLUTE)
    assert isinstance(plan, ModulesPlan) and plan.path == "dkms"
    assert plan.packages == ("nvidia-driver-580-server-open",)


def test_signed_modules_without_the_no_dkms_userspace_are_not_chosen() -> None:
    offered = {"linux-modules-nvidia-580-server-open-7.0.0-30-generic", "nvidia-utils-580-server"}
    plan = choose_ubuntu_modules("580", "open", "7.0.0-30-generic", "disabled", offered)
    assert isinstance(plan, ModulesPlan) and plan.path == "dkms"


@pytest.mark.parametrize(("secure_boot", "note"), [("disabled", False), ("unknown", True)])
def test_without_signed_modules_dkms_is_chosen_when_secure_boot_is_not_on(secure_boot: str, note: bool) -> None:
    plan = choose_ubuntu_modules("580", "open", "7.0.0-31-generic", secure_boot, RESOLUTE)
    assert isinstance(plan, ModulesPlan) and plan.path == "dkms"
    assert plan.packages == ("nvidia-driver-580-server-open",)
    assert plan.other_path_prefixes == ("linux-modules-nvidia-", "nvidia-headless-no-dkms-")
    assert bool(plan.notes) is note and (not note or "mokutil --sb-state" in plan.notes[0])


def test_secure_boot_on_without_signed_modules_for_the_running_kernel_is_refused_with_every_fix() -> None:
    refusal = choose_ubuntu_modules("580", "open", "7.0.0-31-generic", "enabled", RESOLUTE)
    assert isinstance(refusal, ModulesRefusal) and refusal.field == "Secure Boot"
    text = refusal.render()
    assert "no linux-modules-nvidia-580-server-open-7.0.0-31-generic" in text, text
    # The fixes: boot the kernel the archive has modules for (and its flavour metapackage), a MOK, or Secure Boot off.
    assert "7.0.0-30-generic" in refusal.fix and "apt install linux-modules-nvidia-580-server-open-generic" in refusal.fix
    assert "mokutil --import" in refusal.fix and "disable Secure Boot" in refusal.fix


def test_secure_boot_on_with_an_enrolled_mok_goes_on_with_dkms_and_says_why_it_loads() -> None:
    """The refusal's second fix: DKMS signs its modules with the Machine Owner Key the team enrolled."""
    plan = choose_ubuntu_modules("580", "open", "7.0.0-31-generic", "enabled", RESOLUTE, mok_enrolled=True)
    assert isinstance(plan, ModulesPlan) and plan.path == "dkms"
    assert "enrolled Machine Owner Key" in plan.notes[0]
    assert "nvidia_driver_mok_enrolled: true" in choose_ubuntu_modules(
        "580", "open", "7.0.0-31-generic", "enabled", RESOLUTE).fix  # type: ignore[union-attr]


def test_an_enrolled_mok_does_not_keep_a_tower_from_canonicals_signed_modules() -> None:
    plan = choose_ubuntu_modules("580", "open", "7.0.0-30-generic", "enabled", RESOLUTE, mok_enrolled=True)
    assert isinstance(plan, ModulesPlan) and plan.path == "precompiled"


def test_the_refusal_names_the_newest_kernels_of_the_same_flavour_with_signed_modules_in_version_order() -> None:
    offered = {f"linux-modules-nvidia-580-server-open-{release}" for release in (
        "5.15.0-99-generic", "5.15.0-125-generic", "5.15.0-1051-aws", "5.15.0-100-generic", "5.15.0-98-generic")}
    refusal = choose_ubuntu_modules("580", "open", "5.15.0-126-generic", "enabled", offered | userspace("580"))
    assert isinstance(refusal, ModulesRefusal)
    assert "(5.15.0-99-generic, 5.15.0-100-generic, 5.15.0-125-generic)" in refusal.fix, refusal.fix
    assert "apt install" not in refusal.fix  # no flavour metapackage offered: nothing to name


def test_secure_boot_on_with_a_kernel_that_is_not_ubuntus_is_refused_saying_why() -> None:
    refusal = choose_ubuntu_modules("580", "open", "6.18.44-fc-v1098", "enabled", RESOLUTE)
    assert isinstance(refusal, ModulesRefusal)
    assert "is not one of Ubuntu's" in refusal.message and "Canonical signs NVIDIA modules only" in refusal.message


@pytest.mark.parametrize("release", [
    "6.8.0-45-generic\nPackage: evil", "6.8.0-45-generic; rm -rf /", "6.8.0-45-generic=1.0", "6.8.0-45-*",
    "../../etc/passwd", "6.8.0-45-GENERIC", "", " 6.8.0-45-generic", "6.8.0-45-generic,nvidia-dkms-580-server",
    "{{ lookup('pipe', 'id') }}", "6.8.0-" + "a" * 200, "6.8.0-45-generic|x", "6.8.0-45-generic/../x",
])
@pytest.mark.parametrize("secure_boot", ["enabled", "disabled"])
def test_a_hostile_kernel_release_is_refused_before_it_reaches_a_package_name(release: str, secure_boot: str) -> None:
    offered = {f"linux-modules-nvidia-580-server-open-{release}"} | userspace("580")
    refusal = choose_ubuntu_modules("580", "open", release, secure_boot, offered)
    assert isinstance(refusal, ModulesRefusal), refusal
    assert refusal.field == "running kernel (uname -r)" and "boot one of Ubuntu's kernels" in refusal.fix
    text = refusal.render()
    assert "\n" not in text and "{{" not in text and len(text) < 500, text


@pytest.mark.parametrize(("args", "field"), [
    (("58O", "open", "6.8.0-45-generic", "enabled"), "nvidia_driver_branch"),
    (("580; x", "open", "6.8.0-45-generic", "enabled"), "nvidia_driver_branch"),
    (("580", "opne", "6.8.0-45-generic", "enabled"), "nvidia_driver_kernel_modules"),
    (("580", "open", "6.8.0-45-generic", "on"), "Secure Boot state"),
])
def test_inputs_of_the_wrong_shape_are_refused_by_name(args: tuple[str, str, str, str], field: str) -> None:
    refusal = choose_ubuntu_modules(*args, offered=RESOLUTE)
    assert isinstance(refusal, ModulesRefusal) and refusal.field == field and refusal.fix


# ------------------------------------------------------------------ Secure Boot


@pytest.mark.parametrize(("efi", "data", "mokutil", "state"), [
    (False, None, None, "disabled"),                          # legacy BIOS: no /sys/firmware/efi
    (True, bytes([6, 0, 0, 0, 1]), None, "enabled"),          # [efivarfs]: attributes, then the data byte
    (True, bytes([7, 0, 0, 0, 0]), None, "disabled"),
    (True, bytes([6, 0, 0, 0, 2]), None, "unknown"),          # neither 0 nor 1
    (True, bytes([6, 0, 0, 1]), None, "unknown"),             # truncated, and no mokutil
    (True, None, "SecureBoot enabled\n", "enabled"),           # mokutil --sb-state where the variable is missing
    (True, None, "SecureBoot disabled\nPlatform is in Setup Mode\n", "disabled"),
    (True, None, "EFI variables are not supported on this system\n", "unknown"),
    (True, None, "xSecureBoot enabled\n", "unknown"),
])
def test_the_secure_boot_state_is_read_from_the_efi_variable_or_mokutil(
        efi: bool, data: bytes | None, mokutil: str | None, state: str) -> None:
    assert secure_boot_state(efi, data, mokutil) == state


def _filters() -> dict[str, object]:
    """The filters of the roles' plugins, loaded as Ansible loads them (by file, not as a package)."""
    filters: dict[str, object] = {}
    for role, plugin in (("tower_facts", "secure_boot.py"), ("nvidia_driver", "ubuntu_modules.py")):
        path = REPO / "roles" / role / "filter_plugins" / plugin
        spec = importlib.util.spec_from_file_location(f"{role}_filters", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        filters.update(module.FilterModule().filters())
    return filters


def test_the_roles_filters_carry_slurped_bytes_and_the_decision_as_plain_data() -> None:
    filters = _filters()
    slurped = base64.b64encode(bytes([6, 0, 0, 0, 1])).decode()
    assert filters["nomadrig_secure_boot"](True, slurped, "") == "enabled"
    assert filters["nomadrig_secure_boot"](True, "not base64!", "SecureBoot disabled") == "disabled"
    decided = filters["nomadrig_ubuntu_modules"](580, "open", "7.0.0-31-generic", "enabled", sorted(RESOLUTE), [])
    assert decided["ok"] is False and decided["message"].startswith("Secure Boot: ")
    decided = filters["nomadrig_ubuntu_modules"]("580", "open", "7.0.0-30-generic", "enabled", sorted(RESOLUTE), [])
    assert decided["ok"] is True and decided["path"] == "precompiled"
    decided = filters["nomadrig_ubuntu_modules"]("580", "open", "7.0.0-31-generic", "enabled", sorted(RESOLUTE), [], True)
    assert decided["ok"] is True and decided["path"] == "dkms"


def test_only_tower_facts_reads_the_secure_boot_variable_so_preflight_and_the_driver_agree() -> None:
    readers = sorted(str(path.relative_to(REPO)) for path in (REPO / "roles").glob("*/*/*.yml")
                     if path.parent.name in ("tasks", "vars", "defaults", "handlers")
                     and ("8be4df61-93ca-11d2-aa0d-00e098032b8c" in path.read_text()
                          or "mokutil, --sb-state" in path.read_text()))
    assert readers == ["roles/tower_facts/tasks/secure_boot.yml", "roles/tower_facts/vars/main.yml"]
    for role in ("preflight", "nvidia_driver"):
        uses = "".join(path.read_text() for path in (REPO / "roles" / role / "tasks").glob("*.yml"))
        assert "tower_facts_secure_boot" in uses, role
