"""Hourly GCP prices from the Cloud Billing Catalog API (service Compute Engine).

GCP bills a GPU box as parts: vCPUs and RAM of the machine series plus each GPU,
each a separate SKU. This module finds those SKUs by description and region and adds
them up. The HTTP session comes from the caller (plain HTTPS with an API key by default),
so tests use a fake session and no network.
"""

from __future__ import annotations

import json
import os
import urllib.parse
import urllib.request
from typing import Any, Protocol

from nomadrig.catalog.models import InstanceType

COMPUTE_ENGINE_SERVICE = "6F81-5844-456A"
SKUS_URL = f"https://cloudbilling.googleapis.com/v1/services/{COMPUTE_ENGINE_SERVICE}/skus"

# SKU description stems of the vCPU/RAM SKUs per machine series ("<stem> Core running in Americas").
SERIES_STEMS = {"n1": "N1 Predefined Instance", "g2": "G2 Instance", "a2": "A2 Instance", "a3": "A3 Instance"}
# SKU description stems of the GPU SKUs, keyed by the accelerator id the catalog uses.
GPU_STEMS = {
    "nvidia-tesla-t4": "Nvidia Tesla T4 GPU",
    "nvidia-tesla-v100": "Nvidia Tesla V100 GPU",
    "nvidia-l4": "Nvidia L4 GPU",
    "nvidia-tesla-a100": "Nvidia Tesla A100 GPU",
    "nvidia-a100-80gb": "Nvidia A100 80GB GPU",
    "nvidia-h100-80gb": "Nvidia H100 80GB GPU",
}
_SPOT_PREFIXES = ("Spot Preemptible ", "Preemptible ")


class JsonSession(Protocol):
    """What the refresh needs from HTTP: GET a URL with query parameters, get JSON back."""

    def get_json(self, url: str, params: dict[str, str]) -> dict[str, Any]: ...


class ApiKeySession:
    """Plain HTTPS with an API key: the Billing Catalog is public data, no OAuth needed."""

    def __init__(self, api_key: str, timeout_s: float = 30.0) -> None:
        self._api_key = api_key
        self._timeout_s = timeout_s

    def get_json(self, url: str, params: dict[str, str]) -> dict[str, Any]:
        query = urllib.parse.urlencode({**params, "key": self._api_key})
        with urllib.request.urlopen(f"{url}?{query}", timeout=self._timeout_s) as response:
            return json.load(response)


def default_session() -> JsonSession:
    """An API-key session from the environment; a clear error when no key is set."""
    from nomadrig.catalog.errors import CatalogRefreshError

    key = os.environ.get("NOMADRIG_GCP_API_KEY") or os.environ.get("GOOGLE_API_KEY")
    if not key:
        raise CatalogRefreshError(
            "GCP API key not found, so GCP prices cannot be refreshed.\n"
            "  Create an API key in a project with the Cloud Billing API enabled "
            "(`gcloud services enable cloudbilling.googleapis.com`) and set NOMADRIG_GCP_API_KEY "
            "(or GOOGLE_API_KEY) to it.")
    return ApiKeySession(key)


def fetch_skus(session: JsonSession) -> list[dict[str, Any]]:
    """All Compute Engine SKUs, following `nextPageToken` until the last page."""
    skus: list[dict[str, Any]] = []
    token = ""
    while True:
        params = {"currencyCode": "USD", "pageSize": "5000"}
        if token:
            params["pageToken"] = token
        page = session.get_json(SKUS_URL, params)
        skus.extend(page.get("skus", []))
        token = page.get("nextPageToken", "")
        if not token:
            return skus


def unit_price_usd(sku: dict[str, Any]) -> float:
    """The SKU's price per unit: `units + nanos / 1e9` of its last (paid) tier."""
    rates = sku["pricingInfo"][0]["pricingExpression"]["tieredRates"]
    price = rates[-1]["unitPrice"]
    return int(price.get("units", "0") or 0) + int(price.get("nanos", 0) or 0) / 1e9


def _sku_price(skus: list[dict[str, Any]], stem: str, region: str, spot: bool) -> float | None:
    """Price of the SKU whose description starts with `stem` for this region and usage type."""
    usage = "Preemptible" if spot else "OnDemand"
    found: list[float] = []
    for sku in skus:
        if sku.get("category", {}).get("usageType") != usage or region not in sku.get("serviceRegions", []):
            continue
        description = sku.get("description", "")
        for prefix in _SPOT_PREFIXES:
            description = description.removeprefix(prefix)
        if description.startswith(stem + " running in") or description == stem:
            found.append(unit_price_usd(sku))
    return min(found) if found else None


def instance_usd_hr(item: InstanceType, region: str, skus: list[dict[str, Any]], spot: bool) -> float | None:
    """vCPUs x core price + RAM GB x RAM price + GPUs x GPU price; None if a part is missing."""
    series = item.machine_type.split("-", 1)[0]
    stem = SERIES_STEMS.get(series)
    gpu_stem = GPU_STEMS.get(item.accelerator_type or "")
    if stem is None or gpu_stem is None:
        return None
    core = _sku_price(skus, f"{stem} Core", region, spot)
    ram = _sku_price(skus, f"{stem} Ram", region, spot)
    gpu = _sku_price(skus, gpu_stem, region, spot)
    if core is None or ram is None or gpu is None:
        return None
    return round(item.vcpu * core + item.ram_gb * ram + item.gpu_count * gpu, 5)
