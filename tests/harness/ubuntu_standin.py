"""A Debian container dressed as Ubuntu, with a signed archive of stand-in GPU packages under Ubuntu's names.

No Ubuntu archive can be reached from here, so the Ubuntu task files of the
roles run against this: a Debian 12 tree whose ``os-release`` and
``lsb-release`` are Ubuntu's (Ansible then reports ``distribution: Ubuntu``,
its version and codename), plus a local apt repository, signed with a
throwaway key, that carries what the roles look for in Ubuntu's
``restricted`` and ``multiverse`` components, as empty packages with Ubuntu's
names, versions and dependency shapes: per driver branch the server
metapackages ``nvidia-driver-<B>-server`` and ``-server-open``, which depend
on the exact version of ``nvidia-dkms-<B>-server[-open]``,
``nvidia-kernel-common-<B>-server``, ``libnvidia-compute-<B>-server`` and
``nvidia-utils-<B>-server``; a retired branch as transitional packages that
depend on the branch that replaced it; and ``nvidia-cuda-toolkit`` at the
release's version. Branches, versions and transitions come from nomadrig's
compatibility data (``nomadrig/compat/data``, each row with its source).

Canonical's signed precompiled modules ("Linux Restricted Modules") are there
too, with their names and dependency shapes (packages.ubuntu.com, source
linux-restricted-modules; NVIDIA GPU Operator's precompiled-driver page):
``linux-modules-nvidia-<B>-server[-open]-<kernel release>`` depending on the
exact version of ``linux-objects-nvidia-<B>-server[-open]-<release>`` and
``linux-signatures-nvidia-<release>``; the flavour metapackage
``linux-modules-nvidia-<B>-server[-open]-generic`` depending on the newest
release's package at its exact version and on ``nvidia-kernel-common-<B>-server
(>= <driver version>)``; and the userspace without DKMS,
``nvidia-headless-no-dkms-<B>-server[-open]`` (exact ``libnvidia-cfg1-`` and
``libnvidia-compute-<B>-server``), ``nvidia-compute-utils-<B>-server``. Left
out: the release package's dependency on its kernel image
(``linux-image-<release> | linux-image-unsigned-<release>``), which a real
Ubuntu tower has installed and a container cannot have.

A container runs its host's kernel, whose release (``uname -r``) is whatever
the test machine boots and usually not an Ubuntu kernel's. So the stand-in
tower states the Ubuntu kernel it "runs" (``RUNNING_KERNEL``, passed to the
role as ``nvidia_driver_observed_kernel``), and the archive publishes signed
modules for ``SIGNED_KERNELS``: on 24.04 for the running kernel, on 22.04
only for an older one (Canonical has not published them for the running
kernel yet), so the two towers take the two paths.

What this proves: Ansible's Ubuntu facts select the Ubuntu task files, they
choose and install the package names they should, refuse a transitional
package with the fix, detect the branch from versions, and a second run
changes nothing. What it does not: that Ubuntu's real packages install,
build or load (their contents, maintainer scripts and DKMS builds), that
Ubuntu's own base packages, Python (3.11 here, Debian's) and archive layout
behave like Debian's, or Secure Boot's real signature check on Canonical's signed
modules: that the modules are signed, that the firmware's Secure Boot accepts
them, that the kernel loads them. Only a real Ubuntu tower shows those.
"""

from __future__ import annotations

import re
from pathlib import Path

from nomadrig.compat.matrix import load_matrix
from tests.harness.rootfs import sources_list
from tests.harness.standin_repo import STANDIN_TAG, SignedRepo, build_signed_repo, empty_package

#: Where the stand-in archive and its key appear inside the container.
REPO_IN_CONTAINER = "/srv/nomadrig-ubuntu-standin"
KEYRING_IN_CONTAINER = "/usr/share/keyrings/nomadrig-ubuntu-standin.gpg"
SOURCES_IN_CONTAINER = "/etc/apt/sources.list.d/nomadrig-ubuntu-standin.sources"

#: os-release of each Ubuntu release, as Ubuntu ships it (the fields Ansible and apt read).
OS_RELEASE = {
    "ubuntu-22.04": ("22.04", "22.04.5 LTS (Jammy Jellyfish)", "jammy"),
    "ubuntu-24.04": ("24.04", "24.04.3 LTS (Noble Numbat)", "noble"),
}

#: The packages a server driver metapackage depends on at its exact version, per kernel module flavour.
DRIVER_PARTS = ("nvidia-kernel-common-{b}-server", "libnvidia-compute-{b}-server", "nvidia-utils-{b}-server")
DKMS = {"": "nvidia-dkms-{b}-server", "-open": "nvidia-dkms-{b}-server-open"}

#: The Ubuntu kernel each stand-in tower states it runs (``nvidia_driver_observed_kernel``).
RUNNING_KERNEL = {"ubuntu-22.04": "5.15.0-126-generic", "ubuntu-24.04": "6.8.0-45-generic"}
#: The kernels the stand-in archive has Canonical's signed modules for, oldest first.
SIGNED_KERNELS = {"ubuntu-22.04": ("5.15.0-125-generic",), "ubuntu-24.04": ("6.8.0-45-generic",)}


def os_release_files(release: str) -> dict[str, str]:
    """The files that make a Debian tree report itself as Ubuntu release (path inside the tree -> content)."""
    version, pretty, codename = OS_RELEASE[release]
    os_release = (f'PRETTY_NAME="Ubuntu {pretty.split(" (")[0]}"\nNAME="Ubuntu"\nVERSION_ID="{version}"\n'
                  f'VERSION="{pretty}"\nVERSION_CODENAME={codename}\nID=ubuntu\nID_LIKE=debian\n'
                  f'HOME_URL="https://www.ubuntu.com/"\nUBUNTU_CODENAME={codename}\n')
    lsb = (f"DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE={version}\nDISTRIB_CODENAME={codename}\n"
           f'DISTRIB_DESCRIPTION="Ubuntu {pretty.split(" (")[0]}"\n')
    return {"usr/lib/os-release": os_release, "etc/lsb-release": lsb}


def standin_version(version: str) -> str:
    """An archive version marked as a stand-in (sorts just above the real one)."""
    return f"{version}+{STANDIN_TAG}1"


def _driver_packages(out: Path, branch: int, version: str) -> list[Path]:
    """One current server branch: both metapackages and what they depend on, at one exact version."""
    exact = standin_version(version)
    parts = [p.format(b=branch) for p in DRIVER_PARTS]
    debs = [empty_package(out, name, exact, source=f"nvidia-graphics-drivers-{branch}-server") for name in parts]
    for suffix, dkms in DKMS.items():
        dkms_name = dkms.format(b=branch)
        debs.append(empty_package(out, dkms_name, exact, source=f"nvidia-graphics-drivers-{branch}-server"))
        depends = ", ".join(f"{name} (= {exact})" for name in (dkms_name, *parts))
        debs.append(empty_package(out, f"nvidia-driver-{branch}-server{suffix}", exact, depends=depends,
                                  source=f"nvidia-graphics-drivers-{branch}-server"))
    return debs


def _kernel_version(release: str) -> str:
    """The version Ubuntu gives a kernel's packages: 6.8.0-45-generic -> 6.8.0-45.45."""
    upstream, abi, _ = release.split("-", 2)
    return f"{upstream}-{abi}.{abi}"


def _signed_module_packages(out: Path, branch: int, version: str, kernels: tuple[str, ...]) -> list[Path]:
    """Canonical's signed precompiled modules of one branch for kernels (newest last), and the no-DKMS userspace."""
    exact = standin_version(version)
    upstream = version.split("-")[0]
    source = f"nvidia-graphics-drivers-{branch}-server"
    debs = [empty_package(out, f"libnvidia-cfg1-{branch}-server", exact, source=source),
            empty_package(out, f"nvidia-compute-utils-{branch}-server", exact, source=source)]
    for suffix in DKMS:
        debs.append(empty_package(
            out, f"nvidia-headless-no-dkms-{branch}-server{suffix}", exact, source=source,
            depends=f"libnvidia-cfg1-{branch}-server (= {exact}), libnvidia-compute-{branch}-server (= {exact})"))
        prefix = f"linux-modules-nvidia-{branch}-server{suffix}"
        for release in kernels:
            kv = _kernel_version(release)
            objects = f"linux-objects-nvidia-{branch}-server{suffix}-{release}"
            debs.append(empty_package(out, objects, kv, source="linux-restricted-modules"))
            debs.append(empty_package(out, f"{prefix}-{release}", kv, source="linux-restricted-modules",
                                      depends=f"{objects} (= {kv}), linux-signatures-nvidia-{release} (= {kv})"))
        newest = kernels[-1]
        debs.append(empty_package(
            out, f"{prefix}-{newest.split('-', 2)[2]}", _kernel_version(newest), source="linux-restricted-modules",
            depends=f"{prefix}-{newest} (= {_kernel_version(newest)}), nvidia-kernel-common-{branch}-server (>= {upstream})"))
    debs += [empty_package(out, f"linux-signatures-nvidia-{release}", _kernel_version(release),
                           source="linux-restricted-modules") for release in kernels]
    return debs


def _transitional_packages(out: Path, branch: int, replaced_by: int, version: str) -> list[Path]:
    """A retired branch: its metapackages now only pull the branch that replaced it (Ubuntu's shape)."""
    exact = standin_version(version)
    return [empty_package(out, f"nvidia-driver-{branch}-server{suffix}", exact,
                          depends=f"nvidia-driver-{replaced_by}-server{suffix}",
                          source=f"nvidia-graphics-drivers-{branch}-server")
            for suffix in DKMS]


def build_ubuntu_archive(release: str, work: Path) -> SignedRepo:
    """The signed stand-in archive for release, built under work (a few seconds: empty packages)."""
    matrix = load_matrix()
    root = work / f"ubuntu-standin-{release}"
    debs_dir = work / f"ubuntu-standin-{release}-debs"
    debs_dir.mkdir(parents=True, exist_ok=True)
    drivers = matrix.distro_branches(release)
    versions = {d.branch: d.version for d in drivers if d.version}
    debs: list[Path] = []
    for driver in drivers:
        if driver.status == "current":
            debs += _driver_packages(debs_dir, driver.branch, driver.version)
            debs += _signed_module_packages(debs_dir, driver.branch, driver.version, SIGNED_KERNELS[release])
        elif driver.replaced_by is not None:
            version = driver.version or versions.get(driver.replaced_by, f"{driver.replaced_by}.0-0")
            debs += _transitional_packages(debs_dir, driver.branch, driver.replaced_by, version)
    toolkit = re.sub(r"^nvidia-cuda-toolkit ", "", matrix.releases[release].toolkit_package)
    debs.append(empty_package(debs_dir, "nvidia-cuda-toolkit", standin_version(toolkit),
                              source="nvidia-cuda-toolkit"))
    return build_signed_repo(debs, root, work / f"ubuntu-standin-{release}-gnupg")


def ubuntu_tree_files(release: str, repo: SignedRepo, debian_release: str) -> dict[str, str | bytes]:
    """What to write into the Debian tree before boot: Ubuntu's os-release, the archive's key and apt sources.

    Debian's ``main`` stands in for Ubuntu's ``main`` and ``universe``; its contrib and non-free (Debian's
    own NVIDIA packages) are left out, so the GPU stack can come only from the stand-in archive, which
    is bind-mounted at REPO_IN_CONTAINER.
    """
    return {
        **os_release_files(release),
        "etc/apt/sources.list": sources_list(debian_release, components=("main",)),
        KEYRING_IN_CONTAINER: repo.keyring.read_bytes(),
        SOURCES_IN_CONTAINER: repo.sources_entry(REPO_IN_CONTAINER, KEYRING_IN_CONTAINER),
    }

