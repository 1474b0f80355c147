"""The dated GPU catalog: cloud instance types and prices, GPU models, tower builds, profiles.

Data lives in `data/*.csv` (each row with its source and date; see `data/SOURCES.md`).
Importing this package is cheap (standard library only); cloud SDKs are imported by
`nomadrig.catalog.refresh` only when a refresh runs.
"""

from __future__ import annotations

from .errors import CatalogError, CatalogRefreshError
from .gpu_names import gpu_key
from .loader import DEFAULT_DATA_DIR, Catalog, load_catalog
from .models import GpuModel, InstanceType, Price, Profile, TowerBuild

__all__ = [
    "DEFAULT_DATA_DIR",
    "Catalog",
    "CatalogError",
    "CatalogRefreshError",
    "GpuModel",
    "InstanceType",
    "Price",
    "Profile",
    "TowerBuild",
    "gpu_key",
    "load_catalog",
]
