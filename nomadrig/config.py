"""The team file: load, validate, and freeze it into a `Team`.

Everything nomadrig does starts from this one file, so a mistake in it must be
caught here, with the file, line, field path, bad value and the fix, before
anything is provisioned. Shape checks are pydantic's; checks that need the
catalog or other fields (regions allowed, instance types, duplicates, nomads a
tower names) run afterwards and report in the same form.
"""

from __future__ import annotations

import difflib
import re
import zoneinfo
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import BadInputError, InputProblem
from .regions import REGIONS_BY_CLOUD
from .sshkeys import SshKeyProblem, check_public_key
from .yamlmap import LocatedDocument, PathKey, format_path, load_located

CloudName = Literal["aws", "gcp"]
SUPPORTED_OS = ("ubuntu-22.04", "ubuntu-24.04", "ubuntu-26.04", "debian-12", "debian-13")
TowerOs = Literal["ubuntu-22.04", "ubuntu-24.04", "ubuntu-26.04", "debian-12", "debian-13"]
Framework = Literal["pytorch", "jax"]
Severity = Literal["mandatory", "advisory"]
DEFAULT_BACKEND = "file://~/.nomadrig/state"

# A name must be usable as a Linux user name, a Pulumi stack name, an AWS tag,
# a GCP label value and a GCP resource-name part: the strictest of them wins.
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{1,29}$")
NAME_RULE = "lowercase letters, digits and dashes, 2-30 characters, starting with a letter"
RESERVED_NAMES = frozenset({"root", "admin", "ubuntu", "debian", "daemon", "bin", "sys", "nobody", "sshd", "nomads"})


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


def _check_name(value: str, what: str) -> str:
    if not NAME_RE.match(value) or value.endswith("-") or "--" in value:
        raise ValueError(f"{value!r} is not a valid {what}: use {NAME_RULE} (no trailing or double dash)")
    return value


class AwsCloud(Strict):
    account_id: str = ""
    regions: list[str] = Field(min_length=1)
    ami_parameter: str = ""  # SSM parameter of the box image; empty: the Deep Learning Base OSS NVIDIA AMI

    @field_validator("account_id")
    @classmethod
    def _account(cls, v: str) -> str:
        if v and not re.fullmatch(r"\d{12}", v):
            raise ValueError(f"{v!r} is not an AWS account id: 12 digits, quoted in YAML")
        return v


class GcpCloud(Strict):
    project: str
    regions: list[str] = Field(min_length=1)
    billing_account: str = ""
    image_family: str = ""  # Deep Learning VM image family; empty: the stacks' default

    @field_validator("project")
    @classmethod
    def _project(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9-]{4,28}[a-z0-9]", v):
            raise ValueError(
                f"{v!r} is not a GCP project id: 6-30 lowercase letters, digits or dashes, starting with a letter"
            )
        return v

    @field_validator("billing_account")
    @classmethod
    def _billing(cls, v: str) -> str:
        if v and not re.fullmatch(r"[0-9A-F]{6}-[0-9A-F]{6}-[0-9A-F]{6}", v):
            raise ValueError(f"{v!r} is not a billing account id: XXXXXX-XXXXXX-XXXXXX (hex, upper case)")
        return v


class Clouds(Strict):
    aws: AwsCloud | None = None
    gcp: GcpCloud | None = None

    def configured(self) -> list[str]:
        return [name for name in ("aws", "gcp") if getattr(self, name) is not None]

    def regions(self, cloud: str) -> list[str]:
        conf = getattr(self, cloud, None)
        return list(conf.regions) if conf else []


class StateBackend(Strict):
    backend_url: str = DEFAULT_BACKEND

    @field_validator("backend_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^(file://|s3://|gs://|azblob://|https://)", v):
            raise ValueError(f"{v!r} is not a Pulumi backend URL: use file://, s3://, gs://, azblob:// or https://")
        return v


class Budgets(Strict):
    monthly_usd: float = Field(gt=0, le=10_000_000)
    box_hourly_cap_usd: float = Field(gt=0, le=1_000)
    alert_emails: list[str] = Field(default_factory=list)

    @field_validator("alert_emails")
    @classmethod
    def _emails(cls, v: list[str]) -> list[str]:
        for address in v:
            if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", address):
                raise ValueError(f"{address!r} is not an e-mail address")
        return v


class Usage(Strict):
    hours_per_day: float = Field(default=8, gt=0, le=24)
    days_per_month: float = Field(default=21, gt=0, le=31)


class RuleOverride(Strict):
    enabled: bool = True
    severity: Severity | None = None
    params: dict[str, float | int | str | bool] = Field(default_factory=dict)


class PolicySettings(Strict):
    allow_public_ip: bool = False
    max_ttl_hours: int = Field(default=336, ge=1, le=8760)
    max_idle_minutes: int = Field(default=240, ge=5, le=1440)
    min_idle_minutes: int = Field(default=10, ge=1, le=1440)
    spot_required_above_usd: float | None = Field(default=None, gt=0)
    max_gpus_per_box: int = Field(default=8, ge=1, le=16)
    allowed_instance_types: list[str] = Field(default_factory=list)
    stopped_destroy_after_hours: int = Field(default=168, ge=1, le=8760)
    tower_min_ram_gb: int = Field(default=32, ge=1, le=4096)
    tower_min_free_disk_gb: int = Field(default=1000, ge=0)
    tower_data_encryption: Literal["off", "advisory", "mandatory"] = "advisory"
    psu_margin_pct: int = Field(default=20, ge=0, le=100)
    required_tags: list[str] = Field(
        default_factory=lambda: ["nomadrig:managed", "nomadrig:team", "nomadrig:owner", "nomadrig:ttl",
                                 "nomadrig:idle-minutes"]
    )
    rules: dict[str, RuleOverride] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _idle_range(self) -> PolicySettings:
        if self.min_idle_minutes > self.max_idle_minutes:
            raise ValueError(
                f"min_idle_minutes ({self.min_idle_minutes}) is above max_idle_minutes ({self.max_idle_minutes})"
            )
        return self


class Nomad(Strict):
    name: str
    ssh_key: str
    email: str = ""
    timezone: str = "UTC"
    cloud: CloudName | None = None
    region: str | None = None
    gpu_profile: str | None = None
    instance_type: str | None = None
    root_disk_gb: int = Field(default=100, ge=30, le=16384)
    data_disk_gb: int = Field(default=200, ge=1, le=65536)
    spot: bool = False
    ttl_hours: int = Field(default=72, ge=1, le=8760)
    idle_minutes: int = Field(default=60, ge=5, le=1440)
    wireguard_public_key: str = ""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        _check_name(v, "nomad name")
        if v in RESERVED_NAMES:
            raise ValueError(f"{v!r} is a reserved system account name; pick the person's own name")
        return v

    @field_validator("ssh_key")
    @classmethod
    def _key(cls, v: str) -> str:
        try:
            check_public_key(v)
        except SshKeyProblem as problem:
            raise ValueError(f"{problem.message} {problem.fix}") from None
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            close = difflib.get_close_matches(v, sorted(zoneinfo.available_timezones()), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else " Use an IANA name like 'Europe/Berlin'."
            raise ValueError(f"{v!r} is not a time zone.{hint}") from None
        return v

    @field_validator("wireguard_public_key")
    @classmethod
    def _wg(cls, v: str) -> str:
        if v and not re.fullmatch(r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=", v):
            raise ValueError("not a WireGuard public key (44 characters of base64, from `wg pubkey`)")
        return v

    @model_validator(mode="after")
    def _one_type(self) -> Nomad:
        if self.gpu_profile and self.instance_type:
            raise ValueError("give either gpu_profile or instance_type, not both")
        if not self.gpu_profile and not self.instance_type:
            raise ValueError("give a gpu_profile (see `nomadrig catalog`) or an instance_type")
        return self


class TowerGpu(Strict):
    model: str
    count: int = Field(default=1, ge=1, le=16)


class Tower(Strict):
    name: str
    address: str
    ssh_user: str = "root"
    ssh_port: int = Field(default=22, ge=1, le=65535)
    os: TowerOs
    gpus: list[TowerGpu] = Field(default_factory=list)
    cpu_tdp_watts: int = Field(default=125, ge=1, le=2000)
    psu_watts: int = Field(ge=100, le=10000)
    ram_gb: int | None = Field(default=None, ge=1, le=4096)
    disk_gb: int | None = Field(default=None, ge=1, le=1_000_000)
    root_on_ssd: bool | None = None
    data_encrypted: bool | None = None
    driver_channel: Literal["distro", "cuda_repo"] = "distro"
    driver_branch: str = "550"
    cuda_version: str = "12.4"
    frameworks: list[Framework] = Field(default_factory=lambda: ["pytorch"])
    gpu_containers: bool = False
    nomads: list[str] = Field(default_factory=list)
    wireguard_port: int = Field(default=51820, ge=1, le=65535)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name(v, "tower name")

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        if not v or not re.fullmatch(r"[A-Za-z0-9.:\-\[\]]+", v):
            raise ValueError(f"{v!r} is not a host name or IP address")
        return v

    @field_validator("driver_branch")
    @classmethod
    def _branch(cls, v: str) -> str:
        if not re.fullmatch(r"\d{3}", v):
            raise ValueError(f"{v!r} is not an NVIDIA driver branch: three digits, quoted, like \"550\"")
        return v

    @field_validator("cuda_version")
    @classmethod
    def _cuda(cls, v: str) -> str:
        if not re.fullmatch(r"\d{2}\.\d", v):
            raise ValueError(f"{v!r} is not a CUDA version: major.minor, quoted, like \"12.4\"")
        return v


class Team(Strict):
    team: str
    clouds: Clouds = Field(default_factory=Clouds)
    state: StateBackend = Field(default_factory=StateBackend)
    budgets: Budgets
    usage: Usage = Field(default_factory=Usage)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    nomads: list[Nomad] = Field(default_factory=list)
    towers: list[Tower] = Field(default_factory=list)

    @field_validator("team")
    @classmethod
    def _team(cls, v: str) -> str:
        return _check_name(v, "team name")

    def nomad(self, name: str) -> Nomad:
        for nomad in self.nomads:
            if nomad.name == name:
                return nomad
        raise KeyError(name)

    def tower(self, name: str) -> Tower:
        for tower in self.towers:
            if tower.name == name or tower.address == name:
                return tower
        raise KeyError(name)

    def nomad_cloud(self, nomad: Nomad) -> str:
        """The nomad's cloud: explicit, or the team's only cloud."""
        if nomad.cloud:
            return nomad.cloud
        return self.clouds.configured()[0]

    def nomad_region(self, nomad: Nomad) -> str:
        return nomad.region or self.clouds.regions(self.nomad_cloud(nomad))[0]


class LoadedTeam(BaseModel):
    """A validated team plus where it came from (for messages and state paths)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    team: Team
    path: Path

    @cached_property
    def source_text(self) -> str:
        return self.path.read_text()


# ---------------------------------------------------------------- errors


def _did_you_mean(value: Any, choices: Iterable[str]) -> str:
    if not isinstance(value, str):
        return ""
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def _model_at(path: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the mapping at `path` (for listing allowed keys)."""
    model: Any = Team
    for part in path:
        if isinstance(part, int):
            continue
        field_info = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if field_info is None:
            return None
        annotation = field_info.annotation
        model = _unwrap_model(annotation)
        if model is None:
            return None
    return model


def _unwrap_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _unwrap_model(arg)
        if found is not None:
            return found
    return None


def _pydantic_problems(exc: ValidationError, doc: LocatedDocument) -> list[InputProblem]:
    problems = []
    for err in exc.errors(include_url=False):
        loc: PathKey = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        path = format_path(loc)
        value = err.get("input")
        kind = err["type"]
        line = doc.line_of(loc)
        if kind == "extra_forbidden":
            parent = _model_at(loc[:-1])
            allowed = sorted(parent.model_fields) if parent else []
            problems.append(
                InputProblem(path, f"unknown key {loc[-1]!r}.",
                             f"Allowed here: {', '.join(allowed)}.{_did_you_mean(loc[-1], allowed)}", line)
            )
        elif kind == "missing":
            problems.append(InputProblem(path, "is required but missing.", "Add it (see examples/team.yaml).", line))
        elif kind == "literal_error":
            expected = err.get("ctx", {}).get("expected", "")
            choices = re.findall(r"'([^']*)'", expected)
            problems.append(
                InputProblem(path, f"{value!r} is not allowed.",
                             f"Allowed: {', '.join(choices)}.{_did_you_mean(value, choices)}", line)
            )
        elif kind == "value_error":
            msg = str(err["msg"]).removeprefix("Value error, ")
            problems.append(InputProblem(path or "(top level)", msg, "", line))
        elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
            problems.append(InputProblem(path, f"{value!r} is out of range: {err['msg'].lower()}.",
                                         "Use a value within the range.", line))
        elif kind == "too_short":
            problems.append(InputProblem(path, "must not be empty.", "List at least one entry.", line))
        elif kind in ("model_type", "dict_type"):
            problems.append(InputProblem(path or "(top level)", f"expected a mapping of keys, got {value!r}.",
                                         "Write 'key: value' lines indented under it.", line))
        elif kind == "string_type":
            problems.append(InputProblem(path, f"{value!r} must be text, not a {type(value).__name__}.",
                                         f'Quote it in YAML: "{value}".', line))
        elif kind == "list_type":
            problems.append(InputProblem(path, f"expected a list, got {value!r}.",
                                         "Write '- item' lines or [a, b].", line))
        else:
            problems.append(InputProblem(path, f"{value!r}: {err['msg']}.", "", line))
    return problems


def _semantic_problems(team: Team, doc: LocatedDocument) -> list[InputProblem]:
    """Checks that span fields or need the catalog: the same form as shape errors."""
    from .catalog import load_catalog
    from .policy import registry

    catalog = load_catalog()
    problems: list[InputProblem] = []

    def add(path: PathKey, message: str, fix: str) -> None:
        problems.append(InputProblem(format_path(path), message, fix, doc.line_of(path)))

    configured = team.clouds.configured()
    if not configured and team.nomads:
        add(("clouds",), "no cloud is configured but the team has nomads.", "Add clouds.aws or clouds.gcp.")
    for cloud in configured:
        known = REGIONS_BY_CLOUD[cloud]
        for i, region in enumerate(team.clouds.regions(cloud)):
            if region not in known:
                add(("clouds", cloud, "regions", i), f"{region!r} is not a {cloud.upper()} region.",
                    f"Use a {cloud.upper()} region name.{_did_you_mean(region, known)}")
    known_rules = {rule.id for rule in registry.all_rules()}
    for rule_id in team.policy.rules:
        if rule_id not in known_rules:
            add(("policy", "rules", rule_id), f"unknown rule id {rule_id!r}.",
                f"See `nomadrig policy list`.{_did_you_mean(rule_id, known_rules)}")
    for i, type_name in enumerate(team.policy.allowed_instance_types):
        if not any(catalog.instance(c, type_name) for c in ("aws", "gcp")):
            add(("policy", "allowed_instance_types", i), f"{type_name!r} is not in the catalog.",
                "See `nomadrig catalog` for the known types.")

    seen: dict[str, int] = {}
    for i, nomad in enumerate(team.nomads):
        base = ("nomads", i)
        if nomad.name in seen:
            add((*base, "name"), f"duplicate nomad {nomad.name!r} (also nomads[{seen[nomad.name]}]).",
                "Each nomad needs a unique name.")
        seen.setdefault(nomad.name, i)
        cloud = nomad.cloud
        if cloud is None:
            if len(configured) != 1:
                add((*base, "cloud"), "no cloud given and the team has "
                    f"{'no' if not configured else 'several'} clouds.",
                    f"Set cloud: to one of {configured or ['aws', 'gcp']}.")
                continue
            cloud = configured[0]
        elif cloud not in configured:
            add((*base, "cloud"), f"{cloud!r} is not configured for the team.",
                f"Add clouds.{cloud} or use one of {configured}.")
            continue
        allowed = team.clouds.regions(cloud)
        region = nomad.region or allowed[0]
        if region not in REGIONS_BY_CLOUD[cloud]:
            add((*base, "region"), f"{region!r} is not a {cloud.upper()} region.",
                f"Use one of the team's {cloud} regions: {', '.join(allowed)}.{_did_you_mean(region, allowed)}")
            continue
        if region not in allowed:
            add((*base, "region"), f"{region!r} is outside the team's allowed {cloud} regions (data residency).",
                f"Use one of: {', '.join(allowed)}, or add it to clouds.{cloud}.regions if your data may live there.")
            continue
        if nomad.gpu_profile:
            profile = catalog.profile(nomad.gpu_profile, cloud)
            if profile is None:
                names = sorted({p.profile for p in catalog.profiles() if p.cloud == cloud})
                add((*base, "gpu_profile"), f"{nomad.gpu_profile!r} is not a {cloud} GPU profile.",
                    f"Use one of: {', '.join(names)}.{_did_you_mean(nomad.gpu_profile, names)}")
                continue
            type_name, type_path = profile.instance_type, (*base, "gpu_profile")
        else:
            type_name, type_path = nomad.instance_type or "", (*base, "instance_type")
        instance = catalog.instance(cloud, type_name)
        if instance is None:
            names = [t.instance_type for t in catalog.instance_types(cloud)]
            add(type_path, f"{type_name!r} is not a known {cloud} GPU instance type.",
                f"See `nomadrig catalog --cloud {cloud}`.{_did_you_mean(type_name, names)}")
            continue
        if catalog.price(cloud, type_name, region) is None:
            offered = sorted(p.region for p in catalog.prices() if p.cloud == cloud and p.instance_type == type_name)
            add(type_path, f"{type_name!r} is not offered in {region} according to the catalog.",
                f"Pick another type or region; the catalog has it in: {', '.join(offered) or 'no region'}.")
        if not (team.policy.min_idle_minutes <= nomad.idle_minutes <= team.policy.max_idle_minutes):
            add((*base, "idle_minutes"),
                f"{nomad.idle_minutes} is outside the team's policy "
                f"({team.policy.min_idle_minutes}-{team.policy.max_idle_minutes} minutes).",
                "Pick a value in that range or change policy.min_idle_minutes/max_idle_minutes.")
        if nomad.ttl_hours > team.policy.max_ttl_hours:
            add((*base, "ttl_hours"), f"{nomad.ttl_hours} h is above the team's max_ttl_hours "
                f"({team.policy.max_ttl_hours}).", "Lower ttl_hours or raise policy.max_ttl_hours.")

    tower_names: dict[str, int] = {}
    nomad_names = {n.name for n in team.nomads}
    for i, tower in enumerate(team.towers):
        base = ("towers", i)
        if tower.name in tower_names:
            add((*base, "name"), f"duplicate tower {tower.name!r} (also towers[{tower_names[tower.name]}]).",
                "Each tower needs a unique name.")
        tower_names.setdefault(tower.name, i)
        if tower.name in nomad_names:
            add((*base, "name"),
                f"{tower.name!r} is also a nomad's name; `nomadrig up {tower.name}` would be ambiguous.",
                "Rename the tower.")
        for j, who in enumerate(tower.nomads):
            if who not in nomad_names:
                add((*base, "nomads", j), f"{who!r} is not a nomad of this team.",
                    f"Use one of: {', '.join(sorted(nomad_names))}.{_did_you_mean(who, nomad_names)}")
        for j, gpu in enumerate(tower.gpus):
            if catalog.gpu(gpu.model) is None:
                names = [g.model for g in catalog.gpu_models()]
                add((*base, "gpus", j, "model"), f"{gpu.model!r} is not a GPU model the catalog knows.",
                    f"Use one of: {', '.join(names)}.{_did_you_mean(gpu.model, names)}")
    return problems


def parse_team(text: str, filename: str = "<team>") -> Team:
    """Validate team-file text; raise BadInputError with every problem found."""
    doc = load_located(text, filename)
    if doc.problems and doc.data is None:
        raise BadInputError(filename, doc.problems)
    if doc.data is None:
        raise BadInputError(filename, [InputProblem("", "the file is empty.",
                                                    "Start from examples/team.yaml.", 1)])
    if not isinstance(doc.data, dict):
        kind = type(doc.data).__name__
        raise BadInputError(filename, [InputProblem("", f"the file holds a {kind}, not a mapping of keys.",
                                                    "A team file starts with 'team: <name>' at the top level "
                                                    "(see examples/team.yaml).", 1)])
    if doc.problems:
        raise BadInputError(filename, doc.problems)
    try:
        team = Team.model_validate(doc.data)
    except ValidationError as exc:
        raise BadInputError(filename, _pydantic_problems(exc, doc)) from None
    problems = _semantic_problems(team, doc)
    if problems:
        raise BadInputError(filename, problems)
    return team


def load_team(path: str | Path) -> Team:
    """Read and validate a team file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInputError(str(file), [InputProblem("", "no such file.",
                                                     "Pass the team file's path, e.g. examples/team.yaml.")]) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise BadInputError(str(file), [InputProblem("", f"cannot read it: {exc.__class__.__name__}.",
                                                     "Pass a readable UTF-8 YAML file.")]) from None
    return parse_team(text, str(file))


def team_json_schema() -> dict[str, Any]:
    return Team.model_json_schema()

