"""Rules over what a team declares, before any resource exists.

Box rules take a BoxSpec, team rules a TeamPlan, tower rules a TowerSpec.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from nomadrig.policy.model import PolicyContext, Severity, Violation
from nomadrig.policy.registry import spec_rule
from nomadrig.team.model import SUPPORTED_OS

if TYPE_CHECKING:
    from nomadrig.policy.model import TeamPlan
    from nomadrig.spec import BoxSpec, TowerSpec

#: GCP projects that publish public images: Deep Learning VM, ML images, and the OS images Google builds.
GCP_PUBLIC_IMAGE_PROJECTS = ("deeplearning-platform-release", "ml-images", "debian-cloud", "ubuntu-os-cloud",
                             "ubuntu-os-accelerator-images", "cos-cloud")


@spec_rule(id="SPEC-001", title="Boxes stay in the team's allowed regions (data residency)",
           severity=Severity.MANDATORY)
def allowed_region(box: BoxSpec, ctx: PolicyContext) -> Iterable[Violation]:
    allowed = ctx.allowed_regions.get(box.cloud, ())
    if box.region not in allowed:
        yield Violation(
            f"{box.nomad}: region {box.region} is not among the team's {box.cloud} regions "
            f"({', '.join(allowed) or 'none'}); the team's data may not live there",
            f"use one of {', '.join(allowed)} or add the region to clouds.{box.cloud}.regions",
        )


@spec_rule(id="SPEC-002", title="Only allowed instance types", severity=Severity.MANDATORY)
def allowed_instance_type(box: BoxSpec, ctx: PolicyContext) -> Iterable[Violation]:
    allowed = ctx.policy.allowed_instance_types
    if allowed and box.instance_type not in allowed:
        yield Violation(
            f"{box.nomad}: {box.instance_type} is not in policy.allowed_instance_types",
            f"pick one of {', '.join(allowed)} or extend policy.allowed_instance_types",
        )


@spec_rule(id="SPEC-003", title="GPU count per box within the team's limit", severity=Severity.MANDATORY)
def gpu_count_limit(box: BoxSpec, ctx: PolicyContext) -> Iterable[Violation]:
    if box.gpu_count > ctx.policy.max_gpus_per_box:
        yield Violation(
            f"{box.nomad}: {box.instance_type} has {box.gpu_count} GPUs, above policy.max_gpus_per_box "
            f"({ctx.policy.max_gpus_per_box})",
            "pick a smaller instance type or raise policy.max_gpus_per_box",
        )


@spec_rule(id="COST-001", title="Hourly price per box under the team's cap", severity=Severity.MANDATORY)
def hourly_cap(box: BoxSpec, ctx: PolicyContext) -> Iterable[Violation]:
    if ctx.budgets is None:
        return
    cap = ctx.budgets.box_hourly_cap_usd
    price = box.hourly_usd
    if price is None:
        yield Violation(
            f"{box.nomad}: no price is known for {box.instance_type} in {box.region}; the cap cannot be checked",
            "run `nomadrig catalog refresh` or pick a type with a known price",
            severity=Severity.ADVISORY,
        )
    elif price > cap:
        yield Violation(
            f"{box.nomad}: {box.instance_type} costs ${price:.2f}/h{' (spot)' if box.spot else ''}, "
            f"above budgets.box_hourly_cap_usd (${cap:.2f}/h)",
            "pick a cheaper type, set spot: true, or raise budgets.box_hourly_cap_usd",
        )


@spec_rule(id="COST-002", title="Spot required above a price", severity=Severity.MANDATORY)
def spot_above_price(box: BoxSpec, ctx: PolicyContext) -> Iterable[Violation]:
    threshold = ctx.policy.spot_required_above_usd
    if threshold is None or box.spot or box.on_demand_usd_hr is None:
        return
    if box.on_demand_usd_hr > threshold:
        yield Violation(
            f"{box.nomad}: {box.instance_type} costs ${box.on_demand_usd_hr:.2f}/h on demand, above "
            f"policy.spot_required_above_usd (${threshold:.2f}/h), and the box is not spot",
            f"set spot: true for {box.nomad} (the data volume survives an interruption)",
        )


@spec_rule(id="COST-004", title="Projected monthly team cost within the budget", severity=Severity.ADVISORY,
           kind="team", params={"warn_at_pct": 80}, ranges={"warn_at_pct": (1, 100)})
def team_budget(plan: TeamPlan, ctx: PolicyContext) -> Iterable[Violation]:
    from nomadrig.cost import team_projection

    if ctx.budgets is None or ctx.usage is None:
        return
    projection = team_projection(list(plan.boxes), ctx.usage, ctx.budgets.monthly_usd, ctx.policy.allow_public_ip)
    total, budget = projection.total_usd, ctx.budgets.monthly_usd
    if total > budget:
        yield Violation(
            f"projected monthly cost ${total:,.0f} exceeds budgets.monthly_usd ${budget:,.0f} "
            f"({ctx.usage.hours_per_day:g} h/day x {ctx.usage.days_per_month:g} days)",
            "use spot or smaller types, lower usage.hours_per_day, or raise budgets.monthly_usd",
        )
    elif total > budget * float(ctx.param("warn_at_pct", 80)) / 100:
        yield Violation(
            f"projected monthly cost ${total:,.0f} is {100 * total / budget:.0f}% of the budget ${budget:,.0f}",
            "watch the budget alerts; consider spot for the largest boxes",
            severity=Severity.ADVISORY,
        )
    if projection.unknown:
        yield Violation(
            f"no price known for {', '.join(projection.unknown)}: the projection leaves them out",
            "run `nomadrig catalog refresh` where credentials exist",
            severity=Severity.ADVISORY,
        )


@spec_rule(id="SPEC-004", title="Box images come from the team's own account or project, or a known public publisher",
           severity=Severity.MANDATORY, kind="team")
def image_publisher(plan: TeamPlan, ctx: PolicyContext) -> Iterable[Violation]:
    """Whoever owns the image owns every box that boots it: the team, AWS or a public Google image project.

    AWS: a parameter name is read in the team's own account (names under
    /aws/service/ are AWS's public ones, and no one else may create names
    starting with aws); an ARN names its account, which must be
    clouds.aws.account_id. GCP: the stacks pass a bare family to the provider,
    which looks for it in the team's project, then in Google's public OS
    projects: both fine. A projects/<project>/... path must name the team's
    project or one of GCP_PUBLIC_IMAGE_PROJECTS.
    """
    from nomadrig.team.model import image_family_project, ssm_parameter_account

    clouds = ctx.clouds
    aws = clouds.aws if clouds else None
    if aws and aws.ami_parameter:
        owner = ssm_parameter_account(aws.ami_parameter)
        if owner is not None and owner != aws.account_id:
            yield Violation(
                f"team {plan.team}: clouds.aws.ami_parameter is a parameter of AWS account {owner}, not the team's "
                f"({aws.account_id or 'clouds.aws.account_id is not set'}); that account chooses the image every AWS "
                "box boots",
                "use a parameter of the team's account (a plain /path name) or AWS's under /aws/service/, "
                "or set clouds.aws.account_id if that account is the team's",
            )
    gcp = clouds.gcp if clouds else None
    project = image_family_project(gcp.image_family) if gcp and gcp.image_family else None
    if gcp and project is not None and project != gcp.project and project not in GCP_PUBLIC_IMAGE_PROJECTS:
        yield Violation(
            f"team {plan.team}: clouds.gcp.image_family is in project {project}, neither the team's ({gcp.project}) "
            "nor a known public image publisher; that project's owners choose the image every GCP box boots",
            f"use a family of {gcp.project} or of {', '.join(GCP_PUBLIC_IMAGE_PROJECTS)}",
        )


@spec_rule(id="LIFE-001", title="TTL within the team's maximum", severity=Severity.MANDATORY)
def ttl_limit(box: BoxSpec, ctx: PolicyContext) -> Iterable[Violation]:
    if box.ttl_hours > ctx.policy.max_ttl_hours:
        yield Violation(
            f"{box.nomad}: ttl_hours {box.ttl_hours} is above policy.max_ttl_hours ({ctx.policy.max_ttl_hours})",
            f"set ttl_hours to at most {ctx.policy.max_ttl_hours}",
        )


@spec_rule(id="LIFE-002", title="Idle stop within the team's window", severity=Severity.MANDATORY)
def idle_limit(box: BoxSpec, ctx: PolicyContext) -> Iterable[Violation]:
    low, high = ctx.policy.min_idle_minutes, ctx.policy.max_idle_minutes
    if not low <= box.idle_minutes <= high:
        yield Violation(
            f"{box.nomad}: idle_minutes {box.idle_minutes} is outside the policy window {low}-{high}; "
            "an idle GPU box bills every hour it stays up",
            f"set idle_minutes between {low} and {high}",
        )


@spec_rule(id="TWR-001", title="Tower OS is supported", severity=Severity.MANDATORY, kind="tower")
def tower_os(tower: TowerSpec, ctx: PolicyContext) -> Iterable[Violation]:
    if tower.os not in SUPPORTED_OS:
        yield Violation(f"{tower.name}: {tower.os} is not supported",
                        f"install one of {', '.join(SUPPORTED_OS)}")


@spec_rule(id="TWR-002", title="Tower has enough RAM", severity=Severity.MANDATORY, kind="tower")
def tower_ram(tower: TowerSpec, ctx: PolicyContext) -> Iterable[Violation]:
    minimum = ctx.policy.tower_min_ram_gb
    if tower.ram_gb is None:
        yield Violation(f"{tower.name}: ram_gb is not declared; preflight will measure it",
                        f"declare ram_gb (at least {minimum})", severity=Severity.ADVISORY)
    elif tower.ram_gb < minimum:
        yield Violation(
            f"{tower.name}: {tower.ram_gb} GB RAM is below policy.tower_min_ram_gb ({minimum} GB); "
            "data loaders and large models will swap",
            f"fit at least {minimum} GB or lower policy.tower_min_ram_gb",
        )


@spec_rule(id="TWR-003", title="PSU covers the GPUs, the CPU and a margin", severity=Severity.MANDATORY, kind="tower")
def tower_psu(tower: TowerSpec, ctx: PolicyContext) -> Iterable[Violation]:
    budget = tower.power_budget(ctx.policy.psu_margin_pct)
    if budget is None:
        unknown = [g.model for g in tower.gpus if g.tdp_w is None]
        yield Violation(f"{tower.name}: TDP unknown for {', '.join(unknown)}; PSU headroom cannot be checked",
                        "add the GPU to the catalog's gpus.csv with its TDP and source",
                        severity=Severity.ADVISORY)
        return
    if not budget.fits:
        cap = budget.largest_cap_that_fits()
        capping = (f", or cap every GPU with gpu_power_limit_watts: {cap} in the tower's entry (the highest cap "
                   "that fits; nvidia-smi refuses one below the card's minimum power limit)") if cap else ""
        yield Violation(
            f"{tower.name}: PSU {tower.psu_watts} W < {budget.describe()}; transient spikes will trip it under load",
            f"fit a PSU of at least {budget.needed_w()} W{capping}",
        )


@spec_rule(id="TWR-004", title="Tower has enough free disk for datasets", severity=Severity.ADVISORY, kind="tower")
def tower_disk(tower: TowerSpec, ctx: PolicyContext) -> Iterable[Violation]:
    minimum = ctx.policy.tower_min_free_disk_gb
    if tower.disk_gb is not None and tower.disk_gb < minimum:
        yield Violation(f"{tower.name}: {tower.disk_gb} GB free is below {minimum} GB",
                        "add an NVMe drive for datasets or lower policy.tower_min_free_disk_gb")


@spec_rule(id="TWR-005", title="Tower root is on an SSD", severity=Severity.ADVISORY, kind="tower")
def tower_ssd(tower: TowerSpec, ctx: PolicyContext) -> Iterable[Violation]:
    if tower.root_on_ssd is False:
        yield Violation(f"{tower.name}: the root file system is on a rotational disk; "
                        "environments and checkpoints load slowly", "move the OS to an SSD or NVMe drive")


@spec_rule(id="TWR-006", title="Tower data disks are encrypted", severity=Severity.ADVISORY, kind="tower")
def tower_encryption(tower: TowerSpec, ctx: PolicyContext) -> Iterable[Violation]:
    mode = ctx.policy.tower_data_encryption
    if mode == "off" or tower.data_encrypted is not False:
        return
    yield Violation(
        f"{tower.name}: data disks are not encrypted; a stolen tower leaks the team's datasets",
        "encrypt the data disks with LUKS (cryptsetup luksFormat) before copying data",
        severity=Severity.MANDATORY if mode == "mandatory" else None,
    )


@spec_rule(id="TWR-007", title="Tower GPUs are of one architecture", severity=Severity.ADVISORY, kind="tower")
def tower_one_architecture(tower: TowerSpec, ctx: PolicyContext) -> Iterable[Violation]:
    """GPUs of several architectures share one driver, one module flavour and one set of wheels.

    The oldest GPU then decides for all (Pascal keeps an Ada GPU on proprietary modules, a branch that
    still supports Pascal and CUDA 12.x; wheels must carry kernels for both), and a job sees devices of
    different speed and memory. It works, so it is advice, not a refusal; combinations no driver can
    serve at all are refused when the team file is read.
    """
    from nomadrig.compat import load_matrix

    matrix = load_matrix()
    by_arch: dict[str, list[str]] = {}
    for gpu in tower.gpus:
        known = matrix.gpu(gpu.model)
        if known is not None and known.model not in by_arch.setdefault(known.architecture, []):
            by_arch[known.architecture].append(known.model)
    if len(by_arch) < 2:
        return
    mix = ", ".join(f"{arch.title()} ({', '.join(models)})" for arch, models in by_arch.items())
    plan = tower.install
    chosen = (f"; one plan serves them all: driver branch {plan.driver_branch}, {plan.kernel_modules} kernel modules, "
              f"CUDA {plan.cuda_toolkit}") if plan else ""
    yield Violation(
        f"{tower.name}: GPUs of {len(by_arch)} architectures in one tower: {mix}{chosen}; the oldest GPU limits "
        "the driver, kernel modules and CUDA for every GPU, and mixed devices slow multi-GPU jobs to the slowest",
        "put GPUs of one architecture in each tower (split the gpus list into two towers), or accept the older "
        "GPU's limits",
    )
