"""Read and check the compatibility matrix CSVs into a queryable `Matrix`.

The files are edited by hand from NVIDIA's, PyTorch's, JAX's, Debian's and Ubuntu's documents,
so every row is validated on load with the catalog's row reader: a typo stops the program at
file:line:column instead of turning into a driver that cannot load on real hardware.
Standard library only, read once per process: `nomadrig validate` imports this.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from nomadrig.catalog.gpu_names import gpu_key
from nomadrig.catalog.loader import Row, read_rows
from nomadrig.compat.model import (
    Architecture,
    ComputeCapability,
    CudaRelease,
    DistroDriver,
    DriverBranch,
    Gpu,
    GpuRow,
    Release,
    Version,
    Wheel,
    parse_version,
)

DEFAULT_DATA_DIR = Path(__file__).parent / "data"

CUDA_COLUMNS = ("cuda", "min_driver", "role", "source", "date")
BRANCH_COLUMNS = ("branch", "open_modules", "support", "eol", "source", "date")
ARCH_COLUMNS = ("architecture", "max_branch", "open_modules", "max_cuda", "source", "date")
CC_COLUMNS = ("compute_capability", "architecture", "first_cuda", "source", "date")
PCI_COLUMNS = ("gpu_model", "pci_ids", "source", "date")
GPU_COLUMNS = ("gpu_model", "aliases", "compute_capability", "segment", "source", "date")
RELEASE_COLUMNS = ("release", "codename", "python", "toolkit", "toolkit_package", "cuda_repo", "source", "date")
DISTRO_COLUMNS = ("release", "branch", "status", "replaced_by", "flavours", "signed_modules", "version", "source",
                  "date")
WHEEL_COLUMNS = ("framework", "version", "requirements", "variant", "cuda", "index_url", "python_min", "python_max",
                 "archs", "min_cc", "min_driver_branch", "source", "date")

FLAVOURS = ("open", "proprietary")
OPEN_MODULE_LEVELS = ("none", "datacenter", "beta", "production")
FRAMEWORKS = ("pytorch", "jax")

T = TypeVar("T")


def _choice(row: Row, column: str, allowed: tuple[str, ...], required: bool = True) -> str:
    value = row.text(column, required=required)
    if value and value not in allowed:
        raise row.fail(column, f"{column} is {value!r}", f"Use one of: {', '.join(allowed)}.")
    return value


def _version(row: Row, column: str, required: bool = True) -> Version | None:
    raw = row.text(column, required=required)
    if not raw:
        return None
    version = parse_version(raw)
    if version is None:
        raise row.fail(column, f"{column} is {raw!r}, not major.minor", f"Write {column} like 12.4.")
    return version


def _versions(row: Row, column: str) -> tuple[Version, ...]:
    raw = row.text(column, required=False)
    found = []
    for part in filter(None, (p.strip() for p in raw.split(";"))):
        version = parse_version(part)
        if version is None:
            raise row.fail(column, f"{column} holds {part!r}, not major.minor",
                           f"Separate {column} with ';', each like 8.6.")
        found.append(version)
    return tuple(found)


def _cuda(row: Row) -> CudaRelease:
    driver = row.text("min_driver")
    if not all(part.isdigit() for part in driver.split(".")):
        raise row.fail("min_driver", f"min_driver is {driver!r}", "Write the driver version like 550.54.14.")
    return CudaRelease(version=_version(row, "cuda"), min_driver=driver,
                       toolkit=_choice(row, "role", ("toolkit", "reference")) == "toolkit",
                       source=row.text("source"), date=row.date())


def _branch(row: Row) -> DriverBranch:
    return DriverBranch(branch=row.integer("branch"),
                        open_modules=_choice(row, "open_modules", OPEN_MODULE_LEVELS),
                        support=_choice(row, "support", ("lts", "production"), required=False),
                        eol=row.text("eol", required=False), source=row.text("source"), date=row.date())


def _architecture(row: Row) -> Architecture:
    return Architecture(name=row.text("architecture"), max_branch=row.integer("max_branch", required=False),
                        open_modules=_choice(row, "open_modules", ("unsupported", "supported", "required")),
                        max_cuda=_version(row, "max_cuda", required=False), source=row.text("source"),
                        date=row.date())


def _compute_capability(row: Row) -> ComputeCapability:
    return ComputeCapability(version=_version(row, "compute_capability"), architecture=row.text("architecture"),
                             first_cuda=_version(row, "first_cuda"), source=row.text("source"), date=row.date())


def _gpu(row: Row) -> GpuRow:
    aliases = tuple(a.strip() for a in row.text("aliases", required=False).split(";") if a.strip())
    return GpuRow(model=row.text("gpu_model"), aliases=aliases,
                  compute_capability=_version(row, "compute_capability"),
                  segment=_choice(row, "segment", ("datacenter", "workstation", "geforce")),
                  source=row.text("source"), date=row.date())


def _pci_ids(row: Row) -> tuple[str, tuple[str, ...]]:
    """(model, device ids): four lower-case hex digits each, as the kernel writes /sys/bus/pci/devices/*/device."""
    ids = tuple(part.strip() for part in row.text("pci_ids").split(";") if part.strip())
    for device in ids:
        if len(device) != 4 or any(c not in "0123456789abcdef" for c in device):
            raise row.fail("pci_ids", f"{device!r} is not a PCI device id",
                           "Write four lower-case hex digits, e.g. 2684.")
    return row.text("gpu_model"), ids


def _release(row: Row) -> Release:
    return Release(name=row.text("release"), codename=row.text("codename"), python=_version(row, "python"),
                   toolkit=_version(row, "toolkit"), toolkit_package=row.text("toolkit_package"),
                   cuda_repo=row.optional_text("cuda_repo"), source=row.text("source"), date=row.date())


def _distro_driver(row: Row) -> DistroDriver:
    status = _choice(row, "status", ("current", "transitional"))
    flavours = frozenset(f.strip() for f in row.text("flavours", required=False).split(";") if f.strip())
    if unknown := flavours - set(FLAVOURS):
        raise row.fail("flavours", f"flavours holds {sorted(unknown)}", "Use open and/or proprietary, ';'-separated.")
    replaced_by = row.integer("replaced_by", required=False)
    if status == "current" and not flavours:
        raise row.fail("flavours", "a current branch lists no flavour", "Name the flavours the archive packages.")
    if status == "transitional" and replaced_by is None:
        raise row.fail("replaced_by", "a transitional branch names no replacement",
                       "Give the branch its packages now install.")
    return DistroDriver(release=row.text("release"), branch=row.integer("branch"), status=status,
                        replaced_by=replaced_by, flavours=flavours,
                        signed_modules=_choice(row, "signed_modules", ("yes", "no", "unknown")),
                        version=row.text("version", required=False), source=row.text("source"), date=row.date())


def _wheel(row: Row, cuda_branch: Callable[[Version], int | None]) -> Wheel:
    cuda = _version(row, "cuda")
    explicit = row.integer("min_driver_branch", required=False)
    derived = cuda_branch(cuda)
    if explicit is None and derived is None:
        raise row.fail("cuda", f"CUDA {row.text('cuda')} is not in cuda.csv and min_driver_branch is empty",
                       "Add the CUDA version to cuda.csv or give min_driver_branch from the framework's docs.")
    requirements = tuple(r.strip() for r in row.text("requirements").split(";") if r.strip())
    python_min, python_max = _version(row, "python_min"), _version(row, "python_max")
    if python_min > python_max:
        raise row.fail("python_max", "python_max is older than python_min", "Swap the two.")
    return Wheel(framework=_choice(row, "framework", FRAMEWORKS), version=row.text("version"),
                 requirements=requirements, variant=row.text("variant"), cuda=cuda,
                 index_url=row.text("index_url", required=False), python_min=python_min, python_max=python_max,
                 archs=_versions(row, "archs"), min_cc=_version(row, "min_cc"),
                 min_driver_branch=explicit if explicit is not None else derived,
                 source=row.text("source"), date=row.date())


def _load_rows(path: Path, columns: tuple[str, ...], build: Callable[[Row], T],
               key: Callable[[T], object]) -> list[tuple[T, Row]]:
    """Build every row of a file, refusing a key that appears twice."""
    seen: dict[object, int] = {}
    items = []
    for row in read_rows(path, columns):
        item = build(row)
        k = key(item)
        if k in seen:
            raise row.fail("-", f"duplicate row {k!r} (first on line {seen[k]})",
                           "Each key may appear once; merge or delete one of the rows.")
        seen[k] = row.line
        items.append((item, row))
    return items


@dataclass
class Matrix:
    """All compatibility facts, indexed for the questions `decide` asks."""

    cuda: dict[Version, CudaRelease]
    branches: dict[int, DriverBranch]
    architectures: dict[str, Architecture]
    compute_capabilities: dict[Version, ComputeCapability]
    gpu_rows: list[GpuRow]
    releases: dict[str, Release]
    distro_drivers: list[DistroDriver]
    wheels: list[Wheel]
    data_dir: Path
    #: model (as gpus.csv names it) -> its PCI device ids (vendor 10de); models without a row are not listed.
    pci_ids: dict[str, tuple[str, ...]] = field(default_factory=dict)
    _gpu_index: dict[str, Gpu] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._gpu_index = {}
        for row in self.gpu_rows:
            gpu = self._join(row)
            for name in (row.model, *row.aliases):
                self._gpu_index.setdefault(gpu_key(name), gpu)

    def _join(self, row: GpuRow) -> Gpu:
        cc = self.compute_capabilities[row.compute_capability]
        arch = self.architectures[cc.architecture]
        return Gpu(model=row.model, compute_capability=row.compute_capability, segment=row.segment,
                   architecture=arch.name, min_branch=self.cuda[cc.first_cuda].branch, max_branch=arch.max_branch,
                   open_modules=arch.open_modules, first_cuda=cc.first_cuda, max_cuda=arch.max_cuda,
                   source=f"{row.source}; {cc.source}; {arch.source}")

    @property
    def as_of(self) -> str:
        """The newest date among the rows: the day the matrix describes."""
        rows: Iterable = (*self.cuda.values(), *self.branches.values(), *self.architectures.values(),
                          *self.compute_capabilities.values(), *self.gpu_rows, *self.releases.values(),
                          *self.distro_drivers, *self.wheels)
        return max((r.date for r in rows), default="")

    def gpu(self, name: str) -> Gpu | None:
        """Look a GPU up by any spelling gpu_key accepts: "RTX 4090", "NVIDIA GeForce RTX 4090", "nvidia-l4"."""
        return self._gpu_index.get(gpu_key(name))

    def gpu_models(self) -> list[str]:
        return [row.model for row in self.gpu_rows]

    def pci_models(self) -> dict[str, str]:
        """PCI device id -> GPU model, for every board the matrix can recognise on a tower."""
        return {device: model for model, ids in self.pci_ids.items() for device in ids}

    def toolkits(self) -> list[Version]:
        """Requestable CUDA toolkit versions, oldest first."""
        return sorted(v for v, c in self.cuda.items() if c.toolkit)

    def max_cuda(self, branch: int) -> Version | None:
        """The newest toolkit a branch runs (Table 3: its minimum driver is in this branch or older)."""
        fitting = [v for v, c in self.cuda.items() if c.toolkit and c.branch <= branch]
        return max(fitting, default=None)

    def distro_branches(self, release: str) -> list[DistroDriver]:
        return [d for d in self.distro_drivers if d.release == release]

    def wheels_for(self, framework: str) -> list[Wheel]:
        return [w for w in self.wheels if w.framework == framework]


def _check_references(cuda: dict, branches: dict, archs: dict, ccs: dict, releases: dict,
                      rows: dict[str, list[tuple[object, Row]]]) -> None:
    """Every name a row uses must exist in the file that defines it, so the joins below cannot fail."""
    for cc, row in rows["cc"]:
        if cc.architecture not in archs:
            raise row.fail("architecture", f"architecture {cc.architecture!r} is not in architectures.csv",
                           "Add it there or fix the name.")
        if cc.first_cuda not in cuda:
            raise row.fail("first_cuda", "first_cuda is not in cuda.csv", "Add the CUDA version to cuda.csv.")
    for gpu, row in rows["gpus"]:
        if gpu.compute_capability not in ccs:
            raise row.fail("compute_capability", "compute_capability is not in compute_capabilities.csv",
                           "Add it there first.")
    for release, row in rows["releases"]:
        if release.toolkit not in cuda:
            raise row.fail("toolkit", "toolkit is not in cuda.csv", "Add the CUDA version to cuda.csv.")
    for driver, row in rows["distro"]:
        if driver.release not in releases:
            raise row.fail("release", f"release {driver.release!r} is not in releases.csv", "Fix the name.")
        for branch, column in ((driver.branch, "branch"), (driver.replaced_by, "replaced_by")):
            if branch is not None and branch not in branches:
                raise row.fail(column, f"branch {branch} is not in branches.csv", "Add the branch there first.")


def _items(pairs: list[tuple[T, Row]]) -> list[T]:
    return [item for item, _ in pairs]


def _load(data_dir: Path) -> Matrix:
    cuda = {c.version: c for c in _items(_load_rows(data_dir / "cuda.csv", CUDA_COLUMNS, _cuda,
                                                     lambda c: c.version))}

    def cuda_branch(version: Version) -> int | None:
        return cuda[version].branch if version in cuda else None

    rows = {
        "cc": _load_rows(data_dir / "compute_capabilities.csv", CC_COLUMNS, _compute_capability,
                         lambda c: c.version),
        "gpus": _load_rows(data_dir / "gpus.csv", GPU_COLUMNS, _gpu, lambda g: gpu_key(g.model)),
        "releases": _load_rows(data_dir / "releases.csv", RELEASE_COLUMNS, _release, lambda r: r.name),
        "distro": _load_rows(data_dir / "distro_drivers.csv", DISTRO_COLUMNS, _distro_driver,
                             lambda d: (d.release, d.branch)),
    }
    branches = {b.branch: b for b in _items(_load_rows(data_dir / "branches.csv", BRANCH_COLUMNS, _branch,
                                                        lambda b: b.branch))}
    archs = {a.name: a for a in _items(_load_rows(data_dir / "architectures.csv", ARCH_COLUMNS, _architecture,
                                                   lambda a: a.name))}
    wheels = _items(_load_rows(data_dir / "wheels.csv", WHEEL_COLUMNS, lambda r: _wheel(r, cuda_branch),
                               lambda w: (w.framework, w.version, w.variant)))
    ccs = {c.version: c for c in _items(rows["cc"])}
    releases = {r.name: r for r in _items(rows["releases"])}
    _check_references(cuda, branches, archs, ccs, releases, rows)
    return Matrix(cuda=cuda, branches=branches, architectures=archs, compute_capabilities=ccs,
                  gpu_rows=_items(rows["gpus"]), releases=releases, distro_drivers=_items(rows["distro"]),
                  wheels=wheels, data_dir=data_dir, pci_ids=_load_pci_ids(data_dir, _items(rows["gpus"])))


def _load_pci_ids(data_dir: Path, gpus: list[GpuRow]) -> dict[str, tuple[str, ...]]:
    """pci_ids.csv, each model one of gpus.csv's and each device id on one model only; absent file: none."""
    path = data_dir / "pci_ids.csv"
    if not path.exists():
        return {}
    models = {gpu_key(g.model): g.model for g in gpus}
    found: dict[str, tuple[str, ...]] = {}
    owner: dict[str, str] = {}
    for (model, ids), row in _load_rows(path, PCI_COLUMNS, _pci_ids, lambda item: gpu_key(item[0])):
        if gpu_key(model) not in models:
            raise row.fail("gpu_model", f"{model!r} is not in gpus.csv", "Add the GPU there first or fix the name.")
        for device in ids:
            if device in owner:
                raise row.fail("pci_ids", f"{device} is already {owner[device]!r}'s", "A device id names one model.")
            owner[device] = model
        found[models[gpu_key(model)]] = ids
    return found


def load_matrix(data_dir: Path | None = None) -> Matrix:
    """Load and validate the matrix; the packaged one is read once per process."""
    return _load_default() if data_dir is None else _load(Path(data_dir))


@functools.lru_cache(maxsize=1)
def _load_default() -> Matrix:
    return _load(DEFAULT_DATA_DIR)
