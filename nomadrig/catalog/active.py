"""The catalog in effect: the packaged one, or the packaged one with the last `catalog refresh` laid over it.

Above both `loader` (which reads one folder) and `refreshed` (which reads and
writes the refreshed prices), so neither imports the other's caller.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

from nomadrig.catalog.loader import DEFAULT_DATA_DIR, Catalog, read_catalog
from nomadrig.catalog.refreshed import overlay, overlay_key, refreshed_data_dir


def load_catalog(data_dir: Path | None = None) -> Catalog:
    """Load and validate the catalog, read once per process.

    With `data_dir`, that folder is a complete catalog. Without, the packaged catalog is read and
    the prices of the last `nomadrig catalog refresh` are laid over it (see `refreshed.overlay`),
    so a refresh takes effect for every command and a nomadrig upgrade still brings its new rows.
    A refreshed-catalog folder that holds every catalog file (one assembled by hand, e.g. with
    renamed types) is read as the complete catalog it is.
    """
    if data_dir is not None:
        return read_catalog(Path(data_dir))
    refreshed = refreshed_data_dir()
    stamp = overlay_key(refreshed)
    if not stamp[0]:  # no refreshed prices: the packaged catalog, whatever the folder is called
        return _load_packaged()
    if (refreshed / "instance_types.csv").exists():
        return _load_complete(refreshed, stamp)
    return _load_overlaid(refreshed, stamp)


@functools.lru_cache(maxsize=2)
def _load_complete(folder: Path, _stamp: tuple[int, ...]) -> Catalog:
    return dataclasses.replace(read_catalog(folder), refreshed_dir=folder)


@functools.lru_cache(maxsize=1)
def _load_packaged() -> Catalog:
    return read_catalog(DEFAULT_DATA_DIR)


@functools.lru_cache(maxsize=4)
def _load_overlaid(refreshed: Path, _stamp: tuple[int, ...]) -> Catalog:
    """The packaged catalog with refreshed prices laid over it; `_stamp` changes when a refresh writes."""
    return overlay(_load_packaged(), refreshed)
