"""What the wheel installs: the `nomadrig` package only, with the repository's top-level folders inside it.

The metadata lives in pyproject.toml; the packages and their data are here, because they are computed: pyproject's
`packages.find` cannot map a folder to another package's name, and a hand-kept list forgets new subpackages.

- `stacks/` installs as `nomadrig.stacks` (a package-dir mapping), not as a top-level `stacks`.
- `templates/`, `roles/`, `playbooks/`, `policypack/` and `examples/` stay at the top of the repository
  (the design names them there) and ship as data under `nomadrig/_project/<folder>/`, where
  `nomadrig.paths` finds them in an installed nomadrig. Only files travel: no `__pycache__`, no `*.pyc`,
  no symbolic link (`playbooks/roles` points at `roles/`; runs name the roles folder themselves).
"""

import os

from setuptools import find_namespace_packages, find_packages, setup

STACKS_DIR = "stacks"
STACKS_PACKAGE = "nomadrig.stacks"
SHIPPED_PACKAGE = "nomadrig._project"  # nomadrig/paths.py SHIPPED_DIR: keep the two in step
SHIPPED_FOLDERS = ("templates", "roles", "playbooks", "policypack", "examples")  # = nomadrig.paths.SHIPPED_FOLDERS
#: Data files inside the package's own folders.
PACKAGE_DATA = {
    "nomadrig": ["py.typed"],
    "nomadrig.catalog": ["data/*.csv", "data/*.md"],
    "nomadrig.compat": ["data/*.csv", "data/*.md"],
    "nomadrig.agent": ["units/*"],
}


def shipped_tree(package: str, folder: str) -> dict[str, list[str]]:
    """`folder` as `package` and one subpackage per subfolder, each with its own files as package data.

    Every subfolder is named as a package (setuptools treats a data folder it was not told about as a
    package by accident, and warns). Bytecode caches and symbolic links are left out.
    """
    tree = {}
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not os.path.islink(os.path.join(root, d)))
        relative = os.path.relpath(root, folder)
        name = package if relative == "." else f"{package}.{relative.replace(os.sep, '.')}"
        tree[name] = sorted(f for f in files
                            if not f.endswith((".pyc", ".pyo")) and not os.path.islink(os.path.join(root, f)))
    return tree


stacks_packages = [STACKS_PACKAGE] + [f"{STACKS_PACKAGE}.{name}" for name in find_packages(STACKS_DIR)]
shipped_dirs = {f"{SHIPPED_PACKAGE}.{folder}": folder for folder in SHIPPED_FOLDERS}
shipped = {name: files for package, folder in shipped_dirs.items()
           for name, files in shipped_tree(package, folder).items()}

setup(
    packages=find_namespace_packages(include=["nomadrig", "nomadrig.*"], exclude=["*.__pycache__"])
    + stacks_packages
    + list(shipped),
    package_dir={STACKS_PACKAGE: STACKS_DIR, **shipped_dirs},
    package_data={**PACKAGE_DATA, **shipped},
)
