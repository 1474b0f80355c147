"""Cost math: every recurring line of a team's cloud bill, per nomad and per team.

Pure functions over catalog rows (instance prices in prices.csv, storage/network/key rates in
rates.csv), so the cost policy, `nomadrig cost`, `plan` and `advise` all agree. Each line is
quantity x rate, rounded to cents; a line whose rate the catalog does not know is listed with
no amount and left out of the totals (`TeamProjection.unknown` names it). The formulas and
defaults are in the README ("Cost formulas"); in short:

per nomad, in the box's cloud and region (running hours = hours_per_day x days_per_month):
  compute       running h x hourly price; a spot box (with a known spot price) is billed
                running h x (1 + spot_interruption_overhead_pct/100) x spot price: the work lost since
                the last checkpoint and the restart after each interruption are hours paid again
  root-disk     root_disk_gb x disk GB-month rate: billed while the box exists, running or stopped
  data-disk     data_disk_gb x disk GB-month rate: 24/7, also after `down` and the reaper (kept)
  snapshot      data_disk_gb x snapshot_pct_of_data_disk/100 x snapshots_kept x snapshot rate
  nat-data      nat_gb_per_month x NAT processing rate (private boxes; AWS NAT gateway or Cloud NAT)
  cloud-nat-vm  running h x Cloud NAT per-VM rate (GCP private boxes; capped at 32 VMs a gateway)
  public-ip     running h x public IPv4 rate (only with policy.allow_public_ip)
  egress        egress_gb_per_month x internet egress rate
per team network (one per cloud and region with a box), 730 h a month:
  nat-gateway   730 x NAT gateway hourly rate (AWS, private)
  nat-ip        730 x public IPv4 rate of the NAT gateway's address (AWS and GCP, private)
  kms           1 x key-month (AWS key) or key-version-month (GCP) rate
  bucket        bucket_gb x (1 + bucket_noncurrent_pct/100) x object storage GB-month rate
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nomadrig.catalog import Catalog, Rate, load_catalog

if TYPE_CHECKING:
    from nomadrig.spec import BoxSpec
    from nomadrig.team.model import Usage

HOURS_PER_MONTH = 730.0  # the clouds' own billing convention (8,760 h / 12)
TEAM = "(team)"

#: The disk types the stacks create (stacks/aws/box.py: gp3 root and data volume; stacks/gcp/box.py:
#: pd-balanced boot and data disk) and the rates.csv items that price them and their snapshots.
DISK_RATE = {"aws": "ebs-gp3", "gcp": "pd-balanced"}
SNAPSHOT_RATE = {"aws": "ebs-snapshot", "gcp": "snapshot-multiregional"}
EGRESS_RATE = {"aws": "egress-internet", "gcp": "egress-internet"}
NAT_DATA_RATE = {"aws": "nat-data", "gcp": "cloud-nat-data"}
PUBLIC_IP_RATE = {"aws": "public-ipv4", "gcp": "external-ip"}
NAT_IP_RATE = {"aws": "public-ipv4", "gcp": "cloud-nat-ip"}
KMS_RATE = {"aws": "kms-key", "gcp": "kms-key-version"}
BUCKET_RATE = {"aws": "s3-standard", "gcp": "gcs-standard"}
CLOUD_NAT_MAX_VMS = 32  # cloud.google.com/nat/pricing: the per-VM hourly charge stops growing at 32 VMs
#: Extra spot hours per spot hour, in percent, when the team file does not state its own
#: (`usage.spot_interruption_overhead_pct`). AWS's Spot Instance Advisor publishes, per type and region, the
#: share of spot capacity reclaimed over the trailing month in buckets (<5 %, 5-10 %, 10-15 %, 15-20 %, >20 %;
#: spot-bid-advisor.s3.amazonaws.com/spot-advisor-data.json); GCP states that Spot VMs can be preempted at any
#: time with no minimum runtime (cloud.google.com/compute/docs/instances/spot). We take the middle bucket's upper
#: bound, 10 %, as the share of spot hours paid twice: an interrupted run repeats the work since its last
#: checkpoint and spends minutes restarting (boot, reattach the data volume, reload). An assumption, not a
#: measurement: a team that checkpoints often, or measures its own interruptions, should override it.
SPOT_INTERRUPTION_OVERHEAD_PCT = 10.0


@dataclass(frozen=True)
class Assumptions:
    """The usage a projection assumes: the team file's `usage:` (`config.Usage` holds the
    documented defaults, so a caller without a team gets the same figures)."""

    hours_per_day: float
    days_per_month: float
    nat_gb_per_month: float  # per nomad, both directions through the NAT (packages, downloads)
    egress_gb_per_month: float  # per nomad, out to the internet (results, checkpoints pulled home)
    snapshot_pct_of_data_disk: float  # first snapshot = used blocks; 100 = a full data volume
    snapshots_kept: int  # the reaper's last snapshots of each nomad's data volume
    bucket_gb: float  # dataset bucket per team network, current versions
    bucket_noncurrent_pct: float  # versioning keeps overwritten objects: extra GB as % of bucket_gb
    spot_interruption_overhead_pct: float = SPOT_INTERRUPTION_OVERHEAD_PCT  # re-run + restart hours per spot hour

    @property
    def running_hours(self) -> float:
        """Hours a box runs per month when the idle agent stops it outside working hours."""
        return self.hours_per_day * self.days_per_month

    @classmethod
    def from_usage(cls, usage: Usage | None) -> Assumptions:
        from nomadrig.team.model import Usage

        usage = usage if usage is not None else Usage()
        # A usage object without a field (an older team-file schema) gets the documented default.
        return cls(**{name: getattr(usage, name) for name in cls.__dataclass_fields__ if hasattr(usage, name)})

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class CostLine:
    """One line of the bill: quantity x rate = monthly USD, with the rate's source and dates."""

    scope: str  # the nomad, or "(team)" for a team network's shared resources
    cloud: str
    region: str
    item: str  # compute, root-disk, data-disk, snapshot, nat-data, cloud-nat-vm, public-ip, egress, ...
    quantity: float
    unit: str  # h, GB-month, GB, key-month, version-month
    rate_usd: float | None
    monthly_usd: float | None
    basis: str  # the formula with its figures, e.g. "500 GB x $0.088/GB-month"
    note: str = ""  # when it bills, e.g. "24/7, kept after down/reap"
    source: str = ""
    effective_date: str | None = None
    read_date: str = ""

    def stale(self, today: dt.date) -> bool:
        from nomadrig.catalog import is_stale

        return is_stale(self.effective_date, today)

    def as_dict(self) -> dict[str, object]:
        return {"scope": self.scope, "cloud": self.cloud, "region": self.region, "item": self.item,
                "quantity": self.quantity, "unit": self.unit, "rate_usd": self.rate_usd,
                "monthly_usd": self.monthly_usd, "basis": self.basis, "note": self.note, "source": self.source,
                "effective_date": self.effective_date, "read_date": self.read_date}


def _line(scope: str, cloud: str, region: str, item: str, quantity: float, unit: str, rate: Rate | None,
          what: str, note: str = "") -> CostLine:
    """quantity x rate, rounded to cents; no amount when the catalog has no rate for it here."""
    if rate is None:
        return CostLine(scope, cloud, region, item, quantity, unit, None, None, f"{what} x no rate known", note)
    return CostLine(scope, cloud, region, item, quantity, unit, rate.usd, round(quantity * rate.usd, 2),
                    f"{what} x ${rate.usd:g}/{rate.unit}", note, rate.source, rate.effective_date, rate.read_date)


@dataclass(frozen=True)
class BoxCost:
    """A nomad's lines. `hourly_usd` is the instance price; `monthly_usd` is every known line together."""

    nomad: str
    cloud: str
    region: str
    instance_type: str
    spot: bool
    hourly_usd: float | None
    monthly_usd: float | None
    hours_per_month: float
    note: str = ""
    lines: tuple[CostLine, ...] = ()

    @property
    def compute_monthly_usd(self) -> float | None:
        return next((line.monthly_usd for line in self.lines if line.item == "compute"), None)

    def as_dict(self) -> dict[str, object]:
        return {"nomad": self.nomad, "cloud": self.cloud, "region": self.region,
                "instance_type": self.instance_type, "spot": self.spot, "hourly_usd": self.hourly_usd,
                "monthly_usd": self.monthly_usd, "compute_monthly_usd": self.compute_monthly_usd,
                "hours_per_month": self.hours_per_month, "note": self.note,
                "lines": [line.as_dict() for line in self.lines]}


def _total(lines: Iterable[CostLine]) -> float:
    return round(sum(line.monthly_usd for line in lines if line.monthly_usd is not None), 2)


def billed_hours(assume: Assumptions, spot_priced: bool) -> float:
    """Running hours, plus the interruption overhead when the hours are bought at the spot price."""
    hours = assume.running_hours
    return round(hours * (1 + assume.spot_interruption_overhead_pct / 100), 4) if spot_priced else hours


def compute_line(spec: BoxSpec, assume: Assumptions, catalog: Catalog) -> tuple[CostLine, str]:
    """The instance hours: spot price when the box is spot and one is known, else on-demand (said in the note).

    The spot price is the catalog's regional figure: on AWS the mean over the region's AZs (a box goes to
    the first zone of the team network, whose AZ differs per account), on GCP the region's price (the
    same in every zone). Spot hours carry the interruption overhead (`billed_hours`).
    """
    hourly = spec.hourly_usd
    note = ""
    if hourly is None:
        note = f"no {'spot ' if spec.spot else ''}price known for {spec.instance_type} in {spec.region}"
    elif spec.spot and spec.spot_usd_hr is None:
        note = "spot price unknown: on-demand used"
    price = catalog.price(spec.cloud, spec.instance_type, spec.region)
    kind = "spot" if spec.spot and spec.spot_usd_hr is not None else "on-demand"
    hours = billed_hours(assume, kind == "spot" and hourly is not None)
    running = f"{assume.running_hours:g} h"
    if hours != assume.running_hours:
        running = f"{running} x {1 + assume.spot_interruption_overhead_pct / 100:g} interruption overhead"
    basis = f"{running} x " + (f"${hourly:g}/h {kind}" if hourly is not None else "no price known")
    when = f"{assume.hours_per_day:g} h/day x {assume.days_per_month:g} days running"
    if kind == "spot" and hourly is not None:
        when += f"; +{assume.spot_interruption_overhead_pct:g}% re-run and restart hours after interruptions"
    # effective_date dates a row's on-demand figure; a packaged spot figure is an undated snapshot unless
    # the row was fetched whole by a refresh (both figures read the day they took effect).
    dated = price is not None and (kind == "on-demand" or price.effective_date == price.read_date)
    line = CostLine(spec.nomad, spec.cloud, spec.region, "compute", hours, "h", hourly,
                    round(hours * hourly, 2) if hourly is not None else None, basis, when,
                    price.source if price else "", price.effective_date if dated and price else None,
                    price.read_date if price else "")
    return line, note


def nomad_lines(spec: BoxSpec, assume: Assumptions, catalog: Catalog, vms_in_region: int = 1) -> list[CostLine]:
    """Every recurring line of one nomad's box (see the module docstring for the formulas)."""
    cloud, region, who = spec.cloud, spec.region, spec.nomad

    def rate(item: str) -> Rate | None:
        return catalog.rate(cloud, item, region)

    hours = assume.running_hours
    snapshot_gb = spec.data_disk_gb * assume.snapshot_pct_of_data_disk / 100 * assume.snapshots_kept
    lines = [
        compute_line(spec, assume, catalog)[0],
        _line(who, cloud, region, "root-disk", spec.root_disk_gb, "GB-month", rate(DISK_RATE[cloud]),
              f"{spec.root_disk_gb} GB", "while the box exists, running or stopped"),
        _line(who, cloud, region, "data-disk", spec.data_disk_gb, "GB-month", rate(DISK_RATE[cloud]),
              f"{spec.data_disk_gb} GB", "24/7, kept while stopped and after down/reap"),
        _line(who, cloud, region, "snapshot", snapshot_gb, "GB-month", rate(SNAPSHOT_RATE[cloud]),
              f"{snapshot_gb:g} GB", f"{assume.snapshots_kept} reaper snapshot(s) of "
              f"{assume.snapshot_pct_of_data_disk:g}% of the data disk"),
    ]
    if spec.allow_public_ip:
        lines.append(_line(who, cloud, region, "public-ip", hours, "h", rate(PUBLIC_IP_RATE[cloud]),
                           f"{hours:g} h", "while running (policy.allow_public_ip)"))
    else:
        if cloud == "gcp":
            share = min(1.0, CLOUD_NAT_MAX_VMS / max(vms_in_region, 1))
            lines.append(_line(who, cloud, region, "cloud-nat-vm", round(hours * share, 4), "h",
                               rate("cloud-nat-vm"), f"{round(hours * share, 4):g} h",
                               "Cloud NAT per VM while running" + (" (32-VM cap shared)" if share < 1 else "")))
        lines.append(_line(who, cloud, region, "nat-data", assume.nat_gb_per_month, "GB",
                           rate(NAT_DATA_RATE[cloud]), f"{assume.nat_gb_per_month:g} GB", "through the NAT, both ways"))
    lines.append(_line(who, cloud, region, "egress", assume.egress_gb_per_month, "GB", rate(EGRESS_RATE[cloud]),
                       f"{assume.egress_gb_per_month:g} GB", "out to the internet"))
    return lines


def box_cost(spec: BoxSpec, usage: Usage | Any | None, catalog: Catalog | None = None,
             vms_in_region: int = 1) -> BoxCost:
    """One nomad's bill: the instance price and every recurring line of the box."""
    catalog = catalog or load_catalog()
    assume = Assumptions.from_usage(usage)
    lines = nomad_lines(spec, assume, catalog, vms_in_region)
    note = compute_line(spec, assume, catalog)[1]
    return BoxCost(spec.nomad, spec.cloud, spec.region, spec.instance_type, spec.spot, spec.hourly_usd,
                   _total(lines), assume.running_hours, note, tuple(lines))


def team_lines(specs: Iterable[BoxSpec], allow_public_ip: bool, assume: Assumptions,
               catalog: Catalog) -> list[CostLine]:
    """The shared lines of each team network (one per cloud and region with a box), billed 730 h a month."""
    lines: list[CostLine] = []
    for cloud, region in sorted({(s.cloud, s.region) for s in specs}):
        def rate(item: str, cloud: str = cloud, region: str = region) -> Rate | None:
            return catalog.rate(cloud, item, region)

        if not allow_public_ip:
            if cloud == "aws":
                lines.append(_line(TEAM, cloud, region, "nat-gateway", HOURS_PER_MONTH, "h", rate("nat-gateway"),
                                   "730 h", "1 NAT gateway, always on"))
            lines.append(_line(TEAM, cloud, region, "nat-ip", HOURS_PER_MONTH, "h", rate(NAT_IP_RATE[cloud]),
                               "730 h", "the NAT gateway's public IPv4 address"))
        kms_unit = "key-month" if cloud == "aws" else "version-month"
        lines.append(_line(TEAM, cloud, region, "kms", 1, kms_unit, rate(KMS_RATE[cloud]), "1",
                           "team key" if cloud == "aws" else "active version of the team key"))
        bucket_gb = round(assume.bucket_gb * (1 + assume.bucket_noncurrent_pct / 100), 4)
        lines.append(_line(TEAM, cloud, region, "bucket", bucket_gb, "GB-month", rate(BUCKET_RATE[cloud]),
                           f"{bucket_gb:g} GB", f"{assume.bucket_gb:g} GB datasets + "
                           f"{assume.bucket_noncurrent_pct:g}% noncurrent versions"))
    return lines


def fixed_monthly_usd(specs: list[BoxSpec], allow_public_ip: bool, usage: Usage | Any | None = None,
                      catalog: Catalog | None = None) -> dict[str, float]:
    """The team networks' known monthly lines, keyed 'cloud/region/item' (NAT gateway, NAT IP, KMS, bucket)."""
    lines = team_lines(specs, allow_public_ip, Assumptions.from_usage(usage), catalog or load_catalog())
    return {f"{line.cloud}/{line.region}/{line.item}": line.monthly_usd for line in lines
            if line.monthly_usd is not None}


@dataclass(frozen=True)
class TeamProjection:
    boxes: tuple[BoxCost, ...]
    team: tuple[CostLine, ...]
    budget_usd: float | None
    assumptions: Assumptions = field(default_factory=Assumptions)

    @property
    def lines(self) -> list[CostLine]:
        return [line for box in self.boxes for line in box.lines] + list(self.team)

    @property
    def fixed(self) -> dict[str, float]:
        """The team networks' known lines keyed 'cloud/region/item' (kept for callers that sum fixed costs)."""
        return {f"{line.cloud}/{line.region}/{line.item}": line.monthly_usd for line in self.team
                if line.monthly_usd is not None}

    @property
    def total_usd(self) -> float:
        return _total(self.lines)

    @property
    def by_item(self) -> dict[str, float]:
        """Known monthly USD per line item across the team: what a finance person matches to the invoice."""
        items: dict[str, float] = {}
        for line in self.lines:
            if line.monthly_usd is not None:
                items[line.item] = round(items.get(line.item, 0.0) + line.monthly_usd, 2)
        return items

    @property
    def unknown(self) -> list[str]:
        """Lines with no known rate, as 'nomad item' (left out of every total)."""
        return [f"{line.scope} {line.item}" for line in self.lines if line.monthly_usd is None]

    @property
    def budget_used_pct(self) -> float | None:
        return round(100 * self.total_usd / self.budget_usd, 1) if self.budget_usd else None

    def as_dict(self) -> dict[str, object]:
        return {"boxes": [b.as_dict() for b in self.boxes], "team_lines": [line.as_dict() for line in self.team],
                "fixed": self.fixed, "by_item": self.by_item, "total_usd": self.total_usd,
                "budget_usd": self.budget_usd, "budget_used_pct": self.budget_used_pct,
                "unknown_prices": self.unknown, "assumptions": self.assumptions.as_dict()}


def team_projection(specs: list[BoxSpec], usage: Usage | Any | None, budget_usd: float | None,
                    allow_public_ip: bool = False, catalog: Catalog | None = None) -> TeamProjection:
    """Every line of the team's monthly bill under its stated usage, against its budget."""
    catalog = catalog or load_catalog()
    assume = Assumptions.from_usage(usage)
    per_region: dict[tuple[str, str], int] = {}
    for spec in specs:
        per_region[(spec.cloud, spec.region)] = per_region.get((spec.cloud, spec.region), 0) + 1
    boxes = tuple(box_cost(s, usage, catalog, per_region[(s.cloud, s.region)]) for s in specs)
    return TeamProjection(boxes, tuple(team_lines(specs, allow_public_ip, assume, catalog)), budget_usd, assume)


def stack_summaries(projection: TeamProjection) -> list[str]:
    """One line per stack of the projection, its monthly lines itemised, for `nomadrig plan` to print as it is.

    A box stack per nomad, then a team network per cloud and region; a line without a known rate is named
    as unknown (and, as everywhere, left out of the sums).
    """
    def items(lines: Iterable[CostLine]) -> str:
        return ", ".join(f"{line.item} " + (f"${line.monthly_usd:,.2f}" if line.monthly_usd is not None else "unknown")
                         for line in lines)

    out = [f"{box.nomad} ({box.cloud} {box.region}, {box.instance_type}{', spot' if box.spot else ''}): "
           f"${_total(box.lines):,.2f}/month = {items(box.lines)}" for box in projection.boxes]
    for cloud, region in sorted({(line.cloud, line.region) for line in projection.team}):
        mine = [line for line in projection.team if (line.cloud, line.region) == (cloud, region)]
        out.append(f"team network {cloud} {region}: ${_total(mine):,.2f}/month = {items(mine)}")
    return out
