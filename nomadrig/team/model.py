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
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from nomadrig.errors import ValueProblem, describe_char, first_unprintable, shown
from nomadrig.regions import REGIONS_BY_CLOUD
from nomadrig.sshkeys import check_public_key

if TYPE_CHECKING:
    from nomadrig.compat import TowerRequest

CloudName = Literal["aws", "gcp"]
TowerOs = Literal["ubuntu-22.04", "ubuntu-24.04", "ubuntu-26.04", "debian-12", "debian-13"]
#: The releases a tower may run: the roles, the preflight and the policy read this one list.
SUPPORTED_OS: tuple[str, ...] = get_args(TowerOs)
Framework = Literal["pytorch", "jax"]
Severity = Literal["mandatory", "advisory"]
DEFAULT_BACKEND = "file://~/.nomadrig/state"

# A name must be usable as a Linux user name, a Pulumi stack name, an AWS tag,
# a GCP label value and a GCP resource-name part: the strictest of them wins.
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{1,29}$")
NAME_RULE = "lowercase letters, digits and dashes, 2-30 characters, starting with a letter"
RESERVED_NAMES = frozenset({"root", "admin", "ubuntu", "debian", "daemon", "bin", "sys", "nobody", "sshd", "nomads"})


class Strict(BaseModel):
    """Unknown keys refused, values frozen, and numbers that are numbers.

    Every int and float field has a range; floats must be finite (``.inf`` and
    ``.nan`` are YAML floats, and no budget or disk size is infinite). YAML's
    ``true`` and quoted text are refused where a number belongs, though
    pydantic's lax mode would read them as 1 and as the number, so a typo never
    becomes a value. Whole-number floats stay accepted for int fields: Pulumi
    passes numbers back as floats (stacks/tower.py validates them again).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """Refuse true/false and text in a numeric field before pydantic's lax mode converts them."""
        if isinstance(value, bool | str) and info.field_name in _numeric_fields(cls):
            kind = ("a yes/no value" if isinstance(value, bool) else
                    "text (YAML reads an exponent as a number only with a dot: 1.0e+3)"
                    if re.fullmatch(r"[-+]?\d+[eE][-+]?\d+", value) else "text")
            raise PydanticCustomError("number_expected", "{shown} is {kind}, not a number.",
                                      {"shown": shown(value), "kind": kind})
        return value


@cache
def _numeric_fields(model: type[BaseModel]) -> frozenset[str]:
    """The model's fields that hold an int or a float (possibly None)."""
    def numeric(annotation: Any) -> bool:
        return annotation in (int, float) or (
            bool(get_args(annotation)) and all(a in (int, float, type(None)) for a in get_args(annotation)))

    return frozenset(name for name, info in model.model_fields.items() if numeric(info.annotation))


def _check_name(value: str, what: str) -> str:
    if not NAME_RE.fullmatch(value) or value.endswith("-") or "--" in value:
        raise ValueError(f"{shown(value)} is not a valid {what}: use {NAME_RULE} (no trailing or double dash)")
    return value


# ---------------------------------------------------------------- shapes of free text
# Every string of the team file ends up in a file, a command line, a template or a cloud API call. Each has
# the strict shape of the thing it names, so a value that is not that thing stops here, with the fix.

GCP_PROJECT_RE = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]")
GCE_NAME = r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?"  # RFC 1035 label, as GCE names resources (image families too)
GCE_FAMILY_RE = re.compile(GCE_NAME)
GCE_FAMILY_PATH_RE = re.compile(rf"projects/({GCP_PROJECT_RE.pattern})/global/images/family/({GCE_NAME})")
SSM_SEGMENT = r"[A-Za-z0-9_.-]+"
SSM_NAME_RE = re.compile(rf"/?{SSM_SEGMENT}(?:/{SSM_SEGMENT}){{0,14}}")  # at most 15 levels of hierarchy
SSM_ARN_RE = re.compile(r"arn:aws(?:-cn|-us-gov)?:ssm:[a-z]{2}(?:-[a-z]+)+-\d:(\d{12}):parameter"
                        rf"/{SSM_SEGMENT}(?:/{SSM_SEGMENT}){{0,14}}")
MAX_SSM_PARAMETER = 2048
EMAIL_ATOM = r"[A-Za-z0-9!#%&*+/=?^_|~-]+"  # RFC 5322 atext without quote, braces, '$' and backtick
EMAIL_LOCAL_RE = re.compile(rf"{EMAIL_ATOM}(?:\.{EMAIL_ATOM})*")
HOST_LABEL_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
TAG_KEY_RE = re.compile(r"[A-Za-z0-9_.:/=+@-]{1,128}")
TZ_KEY_RE = re.compile(r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+){0,3}")
IPV4_RE = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
EMAIL_FIX = "Write one address like ada@vision-lab.example (printable ASCII, no quotes, braces, '$' or backticks)."


def is_domain_name(value: str) -> bool:
    """A fully qualified DNS name: at least two labels of letters, digits and inner dashes, 253 characters at most."""
    labels = value.split(".")
    return (len(value) <= 253 and len(labels) >= 2 and not labels[-1].isdigit()
            and all(HOST_LABEL_RE.fullmatch(label) for label in labels))


def check_email(value: str) -> str:
    """An address in RFC 5321's dot-atom form: local@domain, printable ASCII, within the RFC's lengths.

    Addresses land in authorized_keys comments, AWS budget subscriptions and
    GCP notification channels. RFC 5321 also allows quoted local parts and IP
    literals; no team needs them and both carry characters that mean something
    to a shell or a template, so they are refused along with '$', backticks and
    braces (legal but never seen in a real address).
    """
    bad = first_unprintable(value, spaces=False)
    if bad is not None:
        raise ValueProblem(f"{shown(value)} is not an e-mail address: it holds {describe_char(bad[1])}.", EMAIL_FIX)
    local, at, domain = value.rpartition("@")
    if not at or not local:
        raise ValueProblem(f"{shown(value)} is not an e-mail address: it has no 'name@' part.", EMAIL_FIX)
    if len(value) > 254 or len(local) > 64:
        raise ValueProblem(f"{shown(value)} is not an e-mail address: longer than 254 characters, or 64 before '@'.",
                           EMAIL_FIX)
    if not EMAIL_LOCAL_RE.fullmatch(local):
        raise ValueProblem(f"{shown(value)} is not an e-mail address: the part before '@' may hold letters, digits, "
                           "dots (not first, last or doubled) and !#%&*+/=?^_|~-.", EMAIL_FIX)
    if not is_domain_name(domain):
        raise ValueProblem(f"{shown(value)} is not an e-mail address: {shown(domain)} is not a domain name.",
                           EMAIL_FIX)
    return value


def _empty_or(value: str, well_formed: bool, what: str, fix: str) -> str:
    """`value` if it is empty (the default applies) or well formed; else the problem, naming `what` it is not."""
    if value and not well_formed:
        raise ValueProblem(f"{shown(value)} is not {what}.", fix)
    return value


def check_ssm_parameter(value: str) -> str:
    """An SSM parameter name (/path/segments) or an SSM parameter ARN; empty means the stacks' default."""
    if re.fullmatch(r"ami-[0-9a-f]{8,17}", value):
        raise ValueProblem(f"{shown(value)} is an AMI id; ami_parameter takes the SSM parameter that holds one "
                           "(so a new image reaches new boxes without editing the team file).",
                           "Store the id in a parameter of your account (aws ssm put-parameter --name "
                           "/vision-lab/box-ami --type String --data-type aws:ec2:image --value ami-...) and "
                           "write its name here.")
    shaped = bool(SSM_NAME_RE.fullmatch(value) or SSM_ARN_RE.fullmatch(value))
    return _empty_or(value, len(value) <= MAX_SSM_PARAMETER and shaped, "an SSM parameter name or ARN",
                     "Write a parameter name like /aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-"
                     "ubuntu-22.04/latest/ami-id (letters, digits, _ . - between slashes, at most 15 levels) or an ARN "
                     "like arn:aws:ssm:eu-west-1:123456789012:parameter/team/box-ami; leave it empty for the default "
                     "image.")


def ssm_parameter_account(value: str) -> str | None:
    """The AWS account named by an SSM parameter ARN; None for a name (read in the caller's own account)."""
    match = SSM_ARN_RE.fullmatch(value)
    return match.group(1) if match else None


def check_image_family(value: str) -> str:
    """A GCE image family (an RFC 1035 label) or its projects/<project>/global/images/family/<family> path."""
    shaped = bool(GCE_FAMILY_RE.fullmatch(value) or GCE_FAMILY_PATH_RE.fullmatch(value))
    return _empty_or(value, shaped, "a GCE image family",
                     "Write a family like common-cu128-ubuntu-2204-nvidia-570 (lowercase letters, digits and dashes, "
                     "at most 63) or projects/deeplearning-platform-release/global/images/family/<family>; leave it "
                     "empty for the default image.")


def image_family_project(value: str) -> str | None:
    """The project of a projects/<project>/global/images/family/<family> path; None for a bare family."""
    match = GCE_FAMILY_PATH_RE.fullmatch(value)
    return match.group(1) if match else None


# ---------------------------------------------------------------- the state backend URL

BACKEND_FIX = ("Use file://~/.nomadrig/state (the default), s3://<bucket>[/prefix][?region=<aws region>], "
               "gs://<bucket>[/prefix], azblob://<container>[/prefix] or https://api.pulumi.com (Pulumi Cloud).")
PULUMI_CLOUD_URLS = ("https://api.pulumi.com", "https://app.pulumi.com")
FILE_PATH_RE = re.compile(r"[A-Za-z0-9._~/+-]+")
PREFIX_RE = re.compile(r"[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*/?")
S3_QUERY_KEYS = {"region", "profile", "awssdk"}  # which region, which credentials, which SDK: none moves the host


def check_backend_url(value: str) -> str:
    """One of the Pulumi backends nomadrig knows, each in the exact shape of its service.

    The URL reaches the Pulumi CLI and the engine's environment. A newline or
    space would split it; credentials in it (``user:pass@``) would be read by
    everyone who can read the team file; another https host would receive the
    team's state, secrets included; gocloud's ``endpoint=`` and similar query
    options would send an s3:// URL's traffic elsewhere. Only ``region``,
    ``profile`` and ``awssdk`` are kept on s3:// URLs: they pick the bucket's
    region, the local credentials and the SDK, never the host.
    """
    bad = first_unprintable(value, spaces=False)
    if bad is not None:
        raise ValueProblem(f"the backend URL holds {describe_char(bad[1])} at character {bad[0] + 1}.",
                           "Write the URL on one line, without spaces. " + BACKEND_FIX)
    scheme, sep, rest = value.partition("://")
    check = _BACKEND_CHECKS.get(scheme) if sep else None
    if check is None:
        raise ValueProblem(f"{shown(value)} is not a Pulumi backend URL nomadrig uses.", BACKEND_FIX)
    if "@" in re.split(r"[/?#]", rest, maxsplit=1)[0]:
        raise ValueProblem(f"{shown(value)} carries credentials (user:password@) that anyone with the team file "
                           "can read.", "Remove them: the cloud's own login (aws configure, gcloud auth login, "
                           "pulumi login) supplies credentials.")
    check(rest)
    return value


def _file_backend(rest: str) -> None:
    """A local folder: a plain path (~ for the home folder), nothing a shell or a URL parser reads."""
    if not FILE_PATH_RE.fullmatch(rest):
        raise ValueProblem(f"{shown('file://' + rest)} is not a plain local path.",
                           "Write file://~/.nomadrig/state or file:///absolute/dir (letters, digits, . _ - + ~ /).")


def _bucket_backend(scheme: str, rest: str, problem_of: Callable[[str], str | None], what: str,
                    query_keys: set[str]) -> None:
    """<bucket>[/prefix][?query]: the bucket by its service's naming rules, a plain prefix, known query keys."""
    location, has_query, query = rest.partition("?")
    bucket, _, prefix = location.partition("/")
    problem = problem_of(bucket)
    if problem:
        raise ValueProblem(f"{shown(bucket)} is not {what} name: {problem}.", BACKEND_FIX)
    if prefix and (not PREFIX_RE.fullmatch(prefix) or {".", ".."} & set(prefix.split("/"))):
        raise ValueProblem(f"{shown(prefix)} is not a plain prefix inside the bucket.",
                           "Use letters, digits and . _ - between single slashes, e.g. "
                           f"{scheme}://{bucket}/nomadrig-state.")
    if has_query:
        _check_query(scheme, query, query_keys)


def _check_query(scheme: str, query: str, allowed: set[str]) -> None:
    """Each key once, only the allowed ones, each value in its own shape."""
    seen: set[str] = set()
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if key not in allowed or key in seen:
            keys = ", ".join(sorted(allowed)) or "none"
            raise ValueProblem(f"{shown(key)} is not a query option nomadrig keeps on {scheme}:// URLs "
                               f"(or it is repeated).", f"Options kept: {keys}; others can move the traffic "
                               "to another host. " + BACKEND_FIX)
        seen.add(key)
        ok = {"region": value in REGIONS_BY_CLOUD["aws"], "awssdk": value in ("v1", "v2"),
              "profile": bool(re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value))}[key]
        if not ok:
            raise ValueProblem(f"{shown(value)} is not a valid {key}.",
                               "region: an AWS region name; profile: an AWS CLI profile name; awssdk: v1 or v2.")


def _s3_bucket_problem(name: str) -> str | None:
    """What S3's bucket naming rules say against name, or None."""
    if not (3 <= len(name) <= 63 and re.fullmatch(r"[a-z0-9][a-z0-9.-]*[a-z0-9]", name)):
        return "3-63 lowercase letters, digits, dots and dashes, starting and ending with a letter or digit"
    if ".." in name or IPV4_RE.fullmatch(name):
        return "no two dots in a row, and not an IP address"
    if name.startswith(("xn--", "sthree-", "amzn-s3-demo-")) or name.endswith(
            ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")):
        return "it starts or ends with a part AWS reserves"
    return None


def _gcs_bucket_problem(name: str) -> str | None:
    """What Cloud Storage's bucket naming rules say against name, or None."""
    parts = name.split(".")
    if not (re.fullmatch(r"[a-z0-9][a-z0-9._-]*[a-z0-9]", name) and 3 <= len(name) <= (222 if len(parts) > 1 else 63)
            and all(0 < len(part) <= 63 for part in parts)):
        return ("3-63 lowercase letters, digits, dashes, underscores and dots (up to 222 with dots, 63 between "
                "them), starting and ending with a letter or digit")
    if IPV4_RE.fullmatch(name) or name.startswith("goog") or "google" in name or "g00gle" in name:
        return "not an IP address, and not starting with 'goog' or containing 'google'"
    return None


def _azure_container_problem(name: str) -> str | None:
    """What Azure's container naming rules say against name, or None."""
    if 3 <= len(name) <= 63 and re.fullmatch(r"[a-z0-9](?:-?[a-z0-9])*", name):
        return None
    return "3-63 lowercase letters, digits and single dashes, starting and ending with a letter or digit"


def _https_backend(rest: str) -> None:
    """Pulumi Cloud only: any other https host would receive the team's state and its secrets."""
    if f"https://{rest}".rstrip("/") not in PULUMI_CLOUD_URLS:
        raise ValueProblem(f"{shown('https://' + rest)} is not Pulumi Cloud; nomadrig sends state to no other "
                           "https host.", "Use https://api.pulumi.com, or a bucket (s3://, gs://, azblob://).")


_BACKEND_CHECKS = {
    "file": _file_backend,
    "s3": lambda rest: _bucket_backend("s3", rest, _s3_bucket_problem, "an S3 bucket", S3_QUERY_KEYS),
    "gs": lambda rest: _bucket_backend("gs", rest, _gcs_bucket_problem, "a Cloud Storage bucket", set()),
    "azblob": lambda rest: _bucket_backend("azblob", rest, _azure_container_problem, "an Azure container", set()),
    "https": _https_backend,
}


# ---------------------------------------------------------------- the model


def _shaped(pattern: str, problem: str, *, unset: tuple[object, ...] = ("",)) -> AfterValidator:
    """A text field that is unset (``unset``: what leaving it out gives) or matches ``pattern`` whole.

    ``problem`` says what the value is not; ``{value}`` in it is the value as shown.
    """
    compiled = re.compile(pattern)

    def check(value: str | None) -> str | None:
        if value in unset or (value is not None and compiled.fullmatch(value)):
            return value
        raise ValueError(problem.format(value=shown(value)))

    return AfterValidator(check)


class AwsCloud(Strict):
    account_id: Annotated[str, _shaped(r"\d{12}", "{value} is not an AWS account id: 12 digits, quoted in YAML")] = ""
    regions: list[str] = Field(min_length=1)
    #: SSM parameter of the box image; empty: the Deep Learning Base OSS NVIDIA AMI.
    ami_parameter: Annotated[str, AfterValidator(check_ssm_parameter)] = ""


class GcpCloud(Strict):
    project: Annotated[str, _shaped(GCP_PROJECT_RE.pattern, "{value} is not a GCP project id: 6-30 lowercase "
                                    "letters, digits or dashes, starting with a letter", unset=())]
    regions: list[str] = Field(min_length=1)
    billing_account: Annotated[str, _shaped(r"[0-9A-F]{6}-[0-9A-F]{6}-[0-9A-F]{6}", "{value} is not a billing "
                                            "account id: XXXXXX-XXXXXX-XXXXXX (hex, upper case)")] = ""
    #: Deep Learning VM image family; empty: the stacks' default.
    image_family: Annotated[str, AfterValidator(check_image_family)] = ""


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
        return check_backend_url(v)


class Budgets(Strict):
    monthly_usd: float = Field(gt=0, le=10_000_000)
    box_hourly_cap_usd: float = Field(gt=0, le=1_000)
    alert_emails: list[str] = Field(default_factory=list, max_length=100)

    @field_validator("alert_emails")
    @classmethod
    def _emails(cls, v: list[str]) -> list[str]:
        for address in v:
            check_email(address)
        return v


class Usage(Strict):
    """What cost projections assume; `nomadrig cost` shows each assumption beside the lines it drives."""

    hours_per_day: float = Field(default=8, gt=0, le=24)
    days_per_month: float = Field(default=21, gt=0, le=31)
    nat_gb_per_month: float = Field(default=50, ge=0, le=1_000_000)  # per nomad, both ways through the NAT
    egress_gb_per_month: float = Field(default=10, ge=0, le=1_000_000)  # per nomad, out to the internet
    snapshot_pct_of_data_disk: float = Field(default=100, ge=0, le=100)  # share of the data disk a snapshot holds
    snapshots_kept: int = Field(default=1, ge=0, le=100)  # the reaper's snapshots kept per nomad
    bucket_gb: float = Field(default=100, ge=0, le=10_000_000)  # dataset bucket per team network
    bucket_noncurrent_pct: float = Field(default=20, ge=0, le=1000)  # extra GB kept by versioning, % of bucket_gb
    spot_interruption_overhead_pct: float = Field(default=10, ge=0, le=100)  # spot hours lost to interruptions, %


class RuleOverride(Strict):
    enabled: bool = True
    severity: Severity | None = None
    # Checked against the rule's declared params (names, types, ranges) once the registry is known:
    # see _rule_override_problems.
    params: dict[str, Any] = Field(default_factory=dict)


class PolicySettings(Strict):
    allow_public_ip: bool = False
    max_ttl_hours: int = Field(default=336, ge=1, le=8760)
    max_idle_minutes: int = Field(default=240, ge=5, le=1440)
    min_idle_minutes: int = Field(default=10, ge=1, le=1440)
    spot_required_above_usd: float | None = Field(default=None, gt=0, le=1_000)
    max_gpus_per_box: int = Field(default=8, ge=1, le=16)
    allowed_instance_types: list[str] = Field(default_factory=list)
    stopped_destroy_after_hours: int = Field(default=168, ge=1, le=8760)
    tower_min_ram_gb: int = Field(default=32, ge=1, le=4096)
    tower_min_free_disk_gb: int = Field(default=1000, ge=0, le=1_000_000)
    tower_data_encryption: Literal["off", "advisory", "mandatory"] = "advisory"
    psu_margin_pct: int = Field(default=20, ge=0, le=100)
    required_tags: list[str] = Field(
        default_factory=lambda: ["nomadrig:managed", "nomadrig:team", "nomadrig:owner", "nomadrig:ttl",
                                 "nomadrig:idle-minutes"], max_length=50,
    )
    rules: dict[str, RuleOverride] = Field(default_factory=dict)

    @field_validator("required_tags")
    @classmethod
    def _tags(cls, v: list[str]) -> list[str]:
        for tag in v:
            if not TAG_KEY_RE.fullmatch(tag) or tag.lower().startswith("aws:"):
                raise ValueProblem(f"{shown(tag)} is not a tag key nomadrig can require.",
                                   "Use 1-128 letters, digits and _ . : / = + - @, not starting with aws: "
                                   "(e.g. nomadrig:owner).")
        return v

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
    wireguard_public_key: Annotated[str, _shaped(r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=", "not a WireGuard public "
                                                 "key (44 characters of base64, from `wg pubkey`)")] = ""

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
        check_public_key(v)
        return v

    @field_validator("email")
    @classmethod
    def _email(cls, v: str) -> str:
        return check_email(v) if v else v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return check_timezone(v)

    @model_validator(mode="after")
    def _one_type(self) -> Nomad:
        if self.gpu_profile and self.instance_type:
            raise ValueError("give either gpu_profile or instance_type, not both")
        if not self.gpu_profile and not self.instance_type:
            raise ValueError("give a gpu_profile (see `nomadrig catalog`) or an instance_type")
        return self


@cache
def check_timezone(value: str) -> str:
    """An IANA time zone name the system knows (cached: a big team names the same few zones many times)."""
    fix = "Use an IANA name like 'Europe/Berlin'."
    if len(value) <= 64 and TZ_KEY_RE.fullmatch(value):
        try:
            zoneinfo.ZoneInfo(value)
            return value
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            close = difflib.get_close_matches(value, sorted(zoneinfo.available_timezones()), n=1)
            fix = f"Did you mean {close[0]!r}?" if close else fix
    raise ValueProblem(f"{shown(value)} is not a time zone.", fix)


class TowerGpu(Strict):
    model: str
    count: int = Field(default=1, ge=1, le=16)


#: A Linux account name as useradd accepts it by default (shadow's NAME_REGEX, without a trailing '$').
LINUX_USER_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
#: One DNS label: letters, digits and inner dashes (RFC 1123).
_DNS_LABEL_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
#: Groups the tower roles create or grant; a nomad account of the same name would take over the group.
TOWER_MANAGED_GROUPS = frozenset(
    {"nomads", "nomadrig-admins", "nomadrig-ssh", "video", "render", "docker", "sudo", "admin", "wheel", "adm",
     "lxd", "libvirt", "disk", "staff", "root"}
)


def check_tower_address(value: str) -> str:
    """A tower's address must be an IP address or a DNS name and nothing else.

    It reaches ssh's command line, the Ansible inventory and WireGuard's
    Endpoint line: a leading dash would be read as an ssh option, and a zone
    id (``%eth0``), brackets or spaces have no meaning in all three.
    """
    import ipaddress

    if "%" not in value:
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            pass
    labels = value.removesuffix(".").split(".")
    if (
        0 < len(value) <= 253
        and all(_DNS_LABEL_RE.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()
    ):
        return value
    raise ValueProblem(
        f"{shown(value)} is not an IP address or a host name.",
        "Write an IPv4 or IPv6 address without brackets or zone, or a DNS name of letters, digits, dots and "
        "inner dashes, e.g. 192.0.2.10 or tower.lab.example.",
    )


class Tower(Strict):
    name: str
    address: str
    ssh_user: str = "root"
    ssh_port: int = Field(default=22, ge=1, le=65535)
    os: TowerOs
    gpus: list[TowerGpu] = Field(default_factory=list)
    cpu_tdp_watts: int = Field(default=125, ge=1, le=2000)
    psu_watts: int = Field(ge=100, le=10000)
    #: Cap every GPU of the tower at this many watts (`nvidia-smi --power-limit`, applied at each boot), so a
    #: supply too small for the cards' TDP still covers them; the policy rule TWR-003 says which cap fits.
    gpu_power_limit_watts: int | None = Field(default=None, ge=25, le=2000)
    ram_gb: int | None = Field(default=None, ge=1, le=4096)
    disk_gb: int | None = Field(default=None, ge=1, le=1_000_000)
    root_on_ssd: bool | None = None
    data_encrypted: bool | None = None
    driver_channel: Literal["distro", "cuda_repo"] = "distro"
    #: Driver branch, kernel-module flavour, CUDA toolkit and Python: None lets nomadrig choose them from the
    #: GPUs and the OS release (`nomadrig.compat.decide`); a value given is checked against the same matrix.
    driver_branch: Annotated[str | None, _shaped(r"\d{3}", '{value} is not an NVIDIA driver branch: three digits, '
                                                  'quoted, like "550" (or leave it out to let nomadrig choose from the '
                                                  'GPUs)', unset=(None,))] = None
    kernel_modules: Literal["open", "proprietary"] | None = None
    cuda_version: Annotated[str | None, _shaped(r"\d{2}\.\d{1,2}", '{value} is not a CUDA version: major.minor, '
                                                 'quoted, like "12.4" (or leave it out to let nomadrig choose)',
                                                 unset=(None,))] = None
    python: str | None = None
    frameworks: list[Framework] = Field(default_factory=lambda: ["pytorch"])
    gpu_containers: bool = False
    nomads: list[str] = Field(default_factory=list)
    wireguard_port: int = Field(default=51820, ge=1, le=65535)
    #: Nomads with passwordless sudo; the others get an account without it.
    admins: list[str] = Field(default_factory=list)
    #: Nomads in the docker group (root-equivalent), only where gpu_containers is true.
    docker_users: list[str] = Field(default_factory=list)
    #: SSH and the extra TCP ports only over WireGuard; None: on where a nomad of the tower has a WireGuard key.
    ssh_only_over_wireguard: bool | None = None
    #: How the GPU stack (driver, CUDA toolkit) takes security releases of its branch. manual: only
    #: `nomadrig tower apply --upgrade` moves it, never under a running job. unattended: unattended-upgrades
    #: takes them from the distribution's archive like any other security fix; the branch stays pinned.
    gpu_stack_updates: Literal["manual", "unattended"] = "manual"
    #: Let the tower's agent reboot it when an update waits for one (a new driver or kernel) and the tower has
    #: been idle for its idle window (no GPU, CPU, SSH or notebook activity); logged-in users are warned first.
    reboot_when_idle: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name(v, "tower name")

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        return check_tower_address(v)

    @field_validator("ssh_user")
    @classmethod
    def _ssh_user(cls, v: str) -> str:
        if not LINUX_USER_RE.fullmatch(v):
            raise ValueProblem(
                f"{shown(v)} is not a Linux user name.",
                "Write the account you log in to the tower as, e.g. admin: lowercase letters, digits, '_' and '-', "
                "up to 32 characters, starting with a letter or '_'.",
            )
        return v

    @field_validator("python")
    @classmethod
    def _python(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"3\.\d{1,2}", v):
            raise ValueProblem(f"{shown(v)} is not a Python 3 version.",
                               'Write major.minor in quotes, e.g. python: "3.12", or leave it out for the release\'s '
                               "python3.")
        return v

    def install_request(self, path: str = "") -> TowerRequest:
        """What this tower asks of the compatibility matrix; None fields are left for `decide` to choose."""
        from nomadrig.compat import TowerRequest

        return TowerRequest(gpus=tuple(gpu.model for gpu in self.gpus), os=self.os, channel=self.driver_channel,
                            branch=self.driver_branch, flavour=self.kernel_modules, cuda=self.cuda_version,
                            frameworks=tuple(self.frameworks), python=self.python, path=path)


class Team(Strict):
    """A whole team file. Its name is the file's ``team:`` key (``Team.name`` in code; dumps write ``team``)."""

    model_config = ConfigDict(serialize_by_alias=True)

    name: str = Field(alias="team")
    clouds: Clouds = Field(default_factory=Clouds)
    state: StateBackend = Field(default_factory=StateBackend)
    budgets: Budgets
    usage: Usage = Field(default_factory=Usage)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    nomads: list[Nomad] = Field(default_factory=list)
    towers: list[Tower] = Field(default_factory=list)

    @field_validator("name")
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
