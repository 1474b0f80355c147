"""The compatibility matrix's records: one frozen dataclass per CSV file in `data/`.

Versions (CUDA "12.4", compute capability "8.9", Python "3.11") are kept as (major, minor)
tuples so comparisons are numeric ("12.10" > "12.9"); `fmt` writes them back. Every record
carries its `source` and `date`, so a refusal can say which document a fact comes from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

Version = tuple[int, int]

#: The pip package a framework's messages name ("torch 2.6.0", not "pytorch 2.6.0").
_PACKAGE_NAMES = {"pytorch": "torch"}

_VERSION_RE = re.compile(r"(\d{1,3})\.(\d{1,3})")


def parse_version(text: str) -> Version | None:
    """'12.4' -> (12, 4); None for anything that is not exactly major.minor."""
    match = _VERSION_RE.fullmatch(text.strip()) if isinstance(text, str) else None
    return (int(match.group(1)), int(match.group(2))) if match else None


def fmt(version: Version) -> str:
    return f"{version[0]}.{version[1]}"


def release_key(version: str) -> tuple[int, ...]:
    """'2.9.1' -> (2, 9, 1): framework versions sort numerically, not as text."""
    return tuple(int(part) for part in re.findall(r"\d+", version))


@dataclass(frozen=True)
class CudaRelease:
    """A CUDA toolkit version and the minimum driver of its GA release (Table 3)."""

    version: Version
    min_driver: str  # e.g. "550.54.14"
    toolkit: bool  # installable / requestable; False: kept only to date old architectures
    source: str
    date: str

    @property
    def branch(self) -> int:
        """The driver branch that first runs this toolkit: the minimum driver's first field."""
        return int(self.min_driver.split(".")[0])


@dataclass(frozen=True)
class DriverBranch:
    """An NVIDIA Linux driver branch and what its open kernel modules load on."""

    branch: int
    open_modules: str  # "none" | "datacenter" | "beta" | "production"
    support: str  # "lts" | "production" | "" (not in NVIDIA's data-center lifecycle table)
    eol: str  # "YYYY-MM" or ""
    source: str
    date: str


@dataclass(frozen=True)
class Architecture:
    """A GPU architecture's driver and toolkit limits."""

    name: str
    max_branch: int | None  # last branch that supports it; None: still supported
    open_modules: str  # "unsupported" | "supported" | "required"
    max_cuda: Version | None  # newest toolkit that can build for it; None: no known limit
    source: str
    date: str


@dataclass(frozen=True)
class ComputeCapability:
    """A compute capability, its architecture and the first CUDA toolkit that targets it."""

    version: Version
    architecture: str
    first_cuda: Version
    source: str
    date: str


@dataclass(frozen=True)
class GpuRow:
    """A GPU model as gpus.csv lists it."""

    model: str
    aliases: tuple[str, ...]
    compute_capability: Version
    segment: str  # "datacenter" | "workstation" | "geforce"
    source: str
    date: str


@dataclass(frozen=True)
class Gpu:
    """Everything the matrix knows about one GPU model, joined from its rows."""

    model: str
    compute_capability: Version
    segment: str
    architecture: str
    min_branch: int  # derived: the branch of the first toolkit that targets its compute capability
    max_branch: int | None
    open_modules: str
    first_cuda: Version
    max_cuda: Version | None
    source: str

    def describe(self) -> str:
        """'RTX 4090 (Ada, compute capability 8.9)': how messages name a GPU."""
        return f"{self.model} ({self.architecture.title()}, compute capability {fmt(self.compute_capability)})"


@dataclass(frozen=True)
class Release:
    """An OS release: its python3, its archive's CUDA toolkit and NVIDIA's repository for it."""

    name: str  # "debian-12"
    codename: str
    python: Version
    toolkit: Version
    toolkit_package: str
    cuda_repo: str | None  # NVIDIA's repository directory ("debian12"); None: none known
    source: str
    date: str

    @property
    def title(self) -> str:
        """'Debian 12', 'Ubuntu 24.04': how messages name a release."""
        family, _, number = self.name.partition("-")
        return f"{family.title()} {number}"


@dataclass(frozen=True)
class DistroDriver:
    """One driver branch in a release's own archive."""

    release: str
    branch: int
    status: str  # "current" | "transitional"
    replaced_by: int | None
    flavours: frozenset[str]
    signed_modules: str  # "yes" | "no" | "unknown"
    version: str
    source: str
    date: str


@dataclass(frozen=True)
class Wheel:
    """One framework build on one package index: what it needs from the tower."""

    framework: str  # "pytorch" | "jax"
    version: str
    requirements: tuple[str, ...]  # pip requirement lines, e.g. ("torch==2.6.0", "torchvision==0.21.0")
    variant: str  # "cu124", "cuda12"
    cuda: Version  # the CUDA runtime the wheel brings
    index_url: str  # "" = PyPI
    python_min: Version
    python_max: Version
    archs: tuple[Version, ...]  # SASS targets; () = compiled on the tower for any GPU >= min_cc
    min_cc: Version
    min_driver_branch: int  # explicit, or derived from the wheel's CUDA via Table 3
    source: str
    date: str

    def runs_on(self, compute_capability: Version) -> bool:
        """Whether the wheel has kernels for a GPU: a target of the same major and a lower or equal minor."""
        if compute_capability < self.min_cc:
            return False
        if not self.archs:
            return True
        major, minor = compute_capability
        return any(a_major == major and a_minor <= minor for a_major, a_minor in self.archs)

    @property
    def release(self) -> str:
        """'torch 2.6.0': the framework release, whatever the CUDA variant."""
        return f"{_PACKAGE_NAMES.get(self.framework, self.framework)} {self.version}"

    @property
    def name(self) -> str:
        """'torch 2.6.0 (cu124)': how messages name one build."""
        return f"{self.release} ({self.variant})"
