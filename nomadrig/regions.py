"""Region names each cloud accepts, as the catalog lists them.

Catching `us-east1` on AWS or `eu-west-1` on GCP at validation time saves a failed deploy
minutes later. The names live in one place, the catalog's `regions.csv` (each row with its
source and date); team-file validation, `catalog refresh` and the catalog loader's check of
every price and rate row all read that file through this mapping, so a region added there is
known everywhere at once. Which GPU types a region offers is the prices' business
(`prices.csv`), not this list's.
"""

from __future__ import annotations

from nomadrig.catalog.loader import region_names

REGIONS_BY_CLOUD: dict[str, frozenset[str]] = region_names()
AWS_REGIONS = REGIONS_BY_CLOUD["aws"]
GCP_REGIONS = REGIONS_BY_CLOUD["gcp"]
