"""Checks of a team file that span fields or need the catalog, the policy's rules or the GPU matrix.

They sit above the team model, the catalog and the policy registry (all of
which they read), so none of those imports them: `nomadrig.team.load` runs
them after the shape checks, and reports in the same located form.
"""

from __future__ import annotations

from collections.abc import Iterable

from nomadrig.catalog import Catalog, load_catalog
from nomadrig.compat import Refusal, decide
from nomadrig.errors import InputProblem, shown
from nomadrig.policy import registry
from nomadrig.regions import REGIONS_BY_CLOUD
from nomadrig.team.model import TOWER_MANAGED_GROUPS, Nomad, PolicySettings, Team, Tower
from nomadrig.team.problems import did_you_mean, parse_path
from nomadrig.yamlmap import LocatedDocument, PathKey, format_path


def _rule_override_problems(policy: PolicySettings) -> list[tuple[PathKey, str, str]]:
    """Overrides name known rules and give each only the params it declares, of their type and range."""
    found: list[tuple[PathKey, str, str]] = []
    known_rules = {rule.id for rule in registry.all_rules()}
    for rule_id, override in policy.rules.items():
        if rule_id not in known_rules:
            found.append((("policy", "rules", rule_id), f"unknown rule id {shown(rule_id)}.",
                          f"See `nomadrig policy list`.{did_you_mean(rule_id, known_rules)}"))
            continue
        rule = registry.get_rule(rule_id)
        for name, value in override.params.items():
            try:
                registry.check_param(rule, name, value)
            except registry.ParamProblem as problem:
                found.append((("policy", "rules", rule_id, "params", name), problem.message, problem.fix))
    return found


Found = list[tuple[PathKey, str, str]]  # (where, what is wrong, the fix)


def semantic_problems(team: Team, doc: LocatedDocument) -> list[InputProblem]:
    """Checks that span fields or need the catalog, in the file's order: the same form as shape errors."""
    catalog = load_catalog()
    found = _cloud_problems(team) + _rule_override_problems(team.policy) + _allowed_type_problems(team, catalog)
    first_nomad = _first_index(n.name for n in team.nomads)
    for i, nomad in enumerate(team.nomads):
        found += _duplicate("nomads", "nomad", i, nomad.name, first_nomad) + _nomad_problems(team, catalog, i, nomad)
    first_tower = _first_index(t.name for t in team.towers)
    nomad_names = [n.name for n in team.nomads]
    for i, tower in enumerate(team.towers):
        found += (_duplicate("towers", "tower", i, tower.name, first_tower)
                  + _tower_problems(catalog, nomad_names, i, tower))
    return [InputProblem(format_path(path), message, fix, doc.line_of(path)) for path, message, fix in found]


def _first_index(names: Iterable[str]) -> dict[str, int]:
    first: dict[str, int] = {}
    for i, name in enumerate(names):
        first.setdefault(name, i)
    return first


def _duplicate(section: str, what: str, index: int, name: str, first: dict[str, int]) -> Found:
    if first[name] == index:
        return []
    return [((section, index, "name"), f"duplicate {what} {name!r} (also {section}[{first[name]}]).",
             f"Each {what} needs a unique name.")]


def _cloud_problems(team: Team) -> Found:
    configured = team.clouds.configured()
    found: Found = []
    if not configured and team.nomads:
        found.append((("clouds",), "no cloud is configured but the team has nomads.", "Add clouds.aws or clouds.gcp."))
    for cloud in configured:
        known = REGIONS_BY_CLOUD[cloud]
        for i, region in enumerate(team.clouds.regions(cloud)):
            if region not in known:
                found.append((("clouds", cloud, "regions", i), f"{shown(region)} is not a {cloud.upper()} region.",
                              f"Use a {cloud.upper()} region name.{did_you_mean(region, known)}"))
    return found


def _allowed_type_problems(team: Team, catalog: Catalog) -> Found:
    return [(("policy", "allowed_instance_types", i), f"{shown(type_name)} is not in the catalog.",
             "See `nomadrig catalog` for the known types.")
            for i, type_name in enumerate(team.policy.allowed_instance_types)
            if not any(catalog.instance(c, type_name) for c in ("aws", "gcp"))]


def _nomad_cloud_and_region(team: Team, base: PathKey, nomad: Nomad) -> tuple[str, str] | Found:
    """Where the nomad's box goes, or why that is not known (a problem there ends the nomad's checks)."""
    configured = team.clouds.configured()
    cloud = nomad.cloud
    if cloud is None:
        if len(configured) != 1:
            return [((*base, "cloud"), "no cloud given and the team has "
                     f"{'no' if not configured else 'several'} clouds.",
                     f"Set cloud: to one of {configured or ['aws', 'gcp']}.")]
        cloud = configured[0]
    elif cloud not in configured:
        return [((*base, "cloud"), f"{cloud!r} is not configured for the team.",
                 f"Add clouds.{cloud} or use one of {configured}.")]
    allowed = team.clouds.regions(cloud)
    region = nomad.region or allowed[0]
    if region not in REGIONS_BY_CLOUD[cloud]:
        return [((*base, "region"), f"{shown(region)} is not a {cloud.upper()} region.",
                 f"Use one of the team's {cloud} regions: {', '.join(allowed)}.{did_you_mean(region, allowed)}")]
    if region not in allowed:
        return [((*base, "region"), f"{shown(region)} is outside the team's allowed {cloud} regions (data residency).",
                 f"Use one of: {', '.join(allowed)}, or add it to clouds.{cloud}.regions if your data may live there.")]
    return cloud, region


def _nomad_problems(team: Team, catalog: Catalog, index: int, nomad: Nomad) -> Found:
    base: PathKey = ("nomads", index)
    where = _nomad_cloud_and_region(team, base, nomad)
    if isinstance(where, list):
        return where
    cloud, region = where
    found: Found = []
    if nomad.gpu_profile:
        profile = catalog.profile(nomad.gpu_profile, cloud)
        if profile is None:
            names = sorted({p.profile for p in catalog.profiles() if p.cloud == cloud})
            return [((*base, "gpu_profile"), f"{shown(nomad.gpu_profile)} is not a {cloud} GPU profile.",
                     f"Use one of: {', '.join(names)}.{did_you_mean(nomad.gpu_profile, names)}")]
        type_name, type_path = profile.instance_type, (*base, "gpu_profile")
    else:
        type_name, type_path = nomad.instance_type or "", (*base, "instance_type")
    if catalog.instance(cloud, type_name) is None:
        names = [t.instance_type for t in catalog.instance_types(cloud)]
        return [(type_path, f"{shown(type_name)} is not a known {cloud} GPU instance type.",
                 f"See `nomadrig catalog --cloud {cloud}`.{did_you_mean(type_name, names)}")]
    if catalog.price(cloud, type_name, region) is None:
        offered = sorted(p.region for p in catalog.prices() if p.cloud == cloud and p.instance_type == type_name)
        found.append((type_path, f"{shown(type_name)} is not offered in {region} according to the catalog.",
                      f"Pick another type or region; the catalog has it in: {', '.join(offered) or 'no region'}."))
    if not (team.policy.min_idle_minutes <= nomad.idle_minutes <= team.policy.max_idle_minutes):
        found.append(((*base, "idle_minutes"),
                      f"{nomad.idle_minutes} is outside the team's policy "
                      f"({team.policy.min_idle_minutes}-{team.policy.max_idle_minutes} minutes).",
                      "Pick a value in that range or change policy.min_idle_minutes/max_idle_minutes."))
    if nomad.ttl_hours > team.policy.max_ttl_hours:
        found.append(((*base, "ttl_hours"), f"{nomad.ttl_hours} h is above the team's max_ttl_hours "
                      f"({team.policy.max_ttl_hours}).", "Lower ttl_hours or raise policy.max_ttl_hours."))
    return found


def _tower_problems(catalog: Catalog, team_nomads: list[str], index: int, tower: Tower) -> Found:
    base: PathKey = ("towers", index)
    nomad_names = set(team_nomads)
    found: Found = []
    if tower.name in nomad_names:
        found.append(((*base, "name"),
                      f"{tower.name!r} is also a nomad's name; `nomadrig up {tower.name}` would be ambiguous.",
                      "Rename the tower."))
    for j, who in enumerate(tower.nomads):
        if who not in nomad_names:
            found.append(((*base, "nomads", j), f"{who!r} is not a nomad of this team.",
                          f"Use one of: {', '.join(sorted(nomad_names))}.{did_you_mean(who, nomad_names)}"))
    for j, gpu in enumerate(tower.gpus):
        if catalog.gpu(gpu.model) is None:
            names = [g.model for g in catalog.gpu_models()]
            found.append(((*base, "gpus", j, "model"), f"{gpu.model!r} is not a GPU model the catalog knows.",
                          f"Use one of: {', '.join(names)}.{did_you_mean(gpu.model, names)}"))
    found += _tower_access_problems(tower, base, team_nomads)
    if all(catalog.gpu(gpu.model) is not None for gpu in tower.gpus):
        found += [(parse_path(p.path), p.message, p.fix) for p in tower_install_problems(tower, index)]
    return found


def tower_install_problems(tower: Tower, index: int) -> list[InputProblem]:
    """Why the tower's GPUs, OS and wishes admit no driver/CUDA/wheel install, each with its field and fix.

    A team file that asks for CUDA 13.0 on branch 550, or open modules on a V100, asks for an install that
    cannot work on any machine: that is bad input (exit 2), not a policy a team could turn off.
    """
    decision = decide(tower.install_request(f"towers[{index}]"))
    return list(decision.problems) if isinstance(decision, Refusal) else []


def _tower_access_problems(tower: Tower, base: PathKey, team_nomads: list[str]) -> list[tuple[PathKey, str, str]]:
    """Who may do what on a tower, as (path, message, fix): admins and docker users need an account there.

    A name that is no account on the tower would grant nothing today and, the
    day that nomad is added, root without anyone having chosen it.
    """
    found: list[tuple[PathKey, str, str]] = []
    holders = list(tower.nomads) or team_nomads
    for field_name in ("admins", "docker_users"):
        for j, who in enumerate(getattr(tower, field_name)):
            if who not in holders:
                found.append(((*base, field_name, j), f"{who!r} has no account on tower {tower.name!r}.",
                              f"Use nomads of this tower: {', '.join(holders) or 'none'}."
                              f"{did_you_mean(who, holders)}"))
    if tower.gpu_stack_updates == "unattended" and tower.driver_channel == "cuda_repo":
        found.append(((*base, "gpu_stack_updates"),
                      "is unattended, but driver_channel is cuda_repo: NVIDIA's repository names no branch in its "
                      "driver packages, so only their hold keeps the tower on its branch, and unattended-upgrades "
                      "skips held packages.",
                      "Set driver_channel: distro (the distribution's packages are pinned to the branch), or "
                      "leave gpu_stack_updates at manual and run `nomadrig tower apply --upgrade`."))
    if tower.gpu_stack_updates == "unattended" and tower.os.startswith("ubuntu-"):
        found.append(((*base, "gpu_stack_updates"),
                      f"is unattended, but the tower runs {tower.os}: Ubuntu retires a driver branch by turning its "
                      "packages into transitional ones that pull a newer branch, and unattended-upgrades would "
                      "install that branch.",
                      "Leave gpu_stack_updates at manual and run `nomadrig tower apply --upgrade` (it refuses "
                      "a transitional package)."))
    if tower.docker_users and not tower.gpu_containers:
        found.append(((*base, "docker_users"),
                      "lists docker users but gpu_containers is false, so the tower has no docker.",
                      "Set gpu_containers: true, or remove docker_users (docker is root-equivalent)."))
    for j, who in enumerate(holders):
        if who in TOWER_MANAGED_GROUPS:
            path = (*base, "nomads", j) if tower.nomads else ("nomads", team_nomads.index(who), "name")
            found.append((path, f"{who!r} is a group the tower roles manage; an account of that name would own it.",
                          "Rename the nomad."))
    return found
