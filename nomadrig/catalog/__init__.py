"""The dated GPU catalog: cloud instance types and prices, GPU models, tower builds, profiles.

Data lives in `data/*.csv` (each row with its source and date; see `data/SOURCES.md`).
Importing this package is cheap (standard library only); cloud SDKs are imported by
`nomadrig.catalog.refresh` only when a refresh runs.
"""

from __future__ import annotations

from nomadrig.catalog.active import load_catalog
from nomadrig.catalog.errors import CatalogError, CatalogRefreshError
from nomadrig.catalog.gpu_names import gpu_key
from nomadrig.catalog.loader import DEFAULT_DATA_DIR, Catalog
from nomadrig.catalog.models import (
    STALE_AFTER_DAYS,
    EgpuEnclosure,
    GpuModel,
    InstanceType,
    Notebook,
    Price,
    Profile,
    Rate,
    Throughput,
    TowerBuild,
    is_stale,
)

__all__ = [
    "DEFAULT_DATA_DIR",
    "Catalog",
    "CatalogError",
    "CatalogRefreshError",
    "EgpuEnclosure",
    "GpuModel",
    "InstanceType",
    "Notebook",
    "Price",
    "Profile",
    "Rate",
    "STALE_AFTER_DAYS",
    "Throughput",
    "TowerBuild",
    "gpu_key",
    "is_stale",
    "load_catalog",
]
