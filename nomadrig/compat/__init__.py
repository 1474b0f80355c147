"""The GPU compatibility matrix: what the hardware decides for a tower's driver, toolkit and wheels.

GPU model -> architecture, driver branches and kernel-module flavours; driver branch -> newest
CUDA toolkit; framework wheel -> driver, Python and GPUs it needs; release -> what its archive
offers. The facts live in `data/*.csv`, each row with its source and date (`data/SOURCES.md`);
`decide` turns a tower's request into an install plan or a refusal with the fix. Importing this
package is cheap (standard library only), so `nomadrig validate` can use it.
"""

from __future__ import annotations

from nomadrig.compat.decide import (
    CHANNELS,
    FIELDS,
    Decision,
    FrameworkPin,
    InstallPlan,
    Refusal,
    TowerRequest,
    decide,
)
from nomadrig.compat.matrix import DEFAULT_DATA_DIR, FLAVOURS, FRAMEWORKS, Matrix, load_matrix
from nomadrig.compat.model import Gpu, Wheel

__all__ = [
    "CHANNELS",
    "DEFAULT_DATA_DIR",
    "FIELDS",
    "FLAVOURS",
    "FRAMEWORKS",
    "Decision",
    "FrameworkPin",
    "Gpu",
    "InstallPlan",
    "Matrix",
    "Refusal",
    "TowerRequest",
    "Wheel",
    "decide",
    "load_matrix",
]
