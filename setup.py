"""Which packages the wheel installs: only `nomadrig`, with the repository's top-level `stacks/` as `nomadrig.stacks`.

The metadata lives in pyproject.toml. This file exists because the package list is computed: pyproject's
`packages.find` cannot map a folder to another package's name, and a hand-kept list forgets new subpackages.
"""

from setuptools import find_namespace_packages, find_packages, setup

STACKS_DIR = "stacks"
STACKS_PACKAGE = "nomadrig.stacks"

stacks_packages = [STACKS_PACKAGE] + [f"{STACKS_PACKAGE}.{name}" for name in find_packages(STACKS_DIR)]

setup(
    packages=find_namespace_packages(include=["nomadrig", "nomadrig.*"], exclude=["*.__pycache__"]) + stacks_packages,
    package_dir={STACKS_PACKAGE: STACKS_DIR},
)
