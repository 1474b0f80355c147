"""CPU framework wheels for a container's Python, downloaded once on the host.

The containers have no route to PyPI. The frameworks role can install from a
local wheel directory instead (``frameworks_find_links`` with
``frameworks_no_index``), which is also how an air-gapped tower is set up, so
the test downloads JAX's CPU wheels for the container's Python here and
bind-mounts the directory read-only.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.harness.rootfs import CACHE_DIR

#: The Python each Debian release ships (python3).
RELEASE_PYTHON = {"bookworm": "3.11", "trixie": "3.13"}


def cpu_jax_wheels(release: str) -> Path:
    """A directory holding jax + jaxlib (CPU) and their dependencies for release's Python."""
    python = RELEASE_PYTHON[release]
    target = CACHE_DIR / "wheels" / f"jax-cpu-py{python}"
    if (target / ".complete").exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "pip", "download", "--quiet",
        "--only-binary=:all:", "--python-version", python,
        "--platform", "manylinux_2_27_x86_64", "-d", str(target), "jax",
    ]  # fmt: skip
    subprocess.run(cmd, check=True)
    (target / ".complete").write_text("")
    return target


def wheel_dir_size_mb(path: Path) -> float:
    """Size of the wheels in path, MB: what a tower downloads for the framework."""
    return sum(p.stat().st_size for p in path.glob("*.whl")) / 1e6
