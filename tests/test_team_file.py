"""The team file: the example validates, and every class of bad input is refused with a located, actionable message."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from nomadrig.errors import BadInputError
from nomadrig.team.load import load_team, parse_team

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "team.yaml"
EXAMPLE_TEXT = EXAMPLE.read_text()
ADA_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJBUEUoeL5J7135PKiUP4idswBM6zCZz+9pHJna9zx5k ada@nomadrig.example"
PRIVATE_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\\n"
    "-----END OPENSSH PRIVATE KEY-----"
)


def test_example_team_file_validates():
    team = load_team(EXAMPLE)
    assert team.name == "vision-lab"
    assert [n.name for n in team.nomads] == ["ada", "grace", "linus"]
    assert team.towers[0].os == "debian-13"


def test_loaded_team_is_frozen():
    team = load_team(EXAMPLE)
    with pytest.raises(ValidationError):
        team.name = "other"  # type: ignore[misc]


def replace_once(old: str, new: str) -> str:
    assert EXAMPLE_TEXT.count(old) >= 1, old
    return EXAMPLE_TEXT.replace(old, new, 1)


def line_of(text: str, needle: str, nth: int = 1) -> int:
    """The line of the nth occurrence of needle (1-based)."""
    hits = [number for number, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(hits) >= nth, needle
    return hits[nth - 1]


# Each case: (id, team file text, field path the message must name, words the message must contain,
#             the line the message must point at (by a needle on that line) or None)
CASES = [
    ("malformed-yaml", replace_once("team: vision-lab", "team: [vision-lab"), "", ["YAML syntax error"], None),
    ("tab-indentation", replace_once("  aws:\n", "\taws:\n"), "", ["YAML syntax error"], None),
    ("empty-file", "", "", ["empty"], None),
    ("comments-only", "# nothing here\n", "", ["empty"], None),
    ("not-a-mapping-list", "- team: a\n- team: b\n", "", ["list", "not a mapping"], None),
    ("not-a-mapping-scalar", "just some text\n", "", ["str", "not a mapping"], None),
    (
        "unknown-top-key",
        replace_once("budgets:", "budget:\n  monthly_usd: 1\nbudgets:"),
        "budget",
        ["unknown key", "Did you mean 'budgets'"],
        "budget:",
    ),
    (
        "misspelt-nomad-key",
        replace_once("    idle_minutes: 60", "    idle_minuts: 60"),
        "nomads[0].idle_minuts",
        ["unknown key", "Did you mean 'idle_minutes'"],
        "idle_minuts",
    ),
    (
        "duplicate-key",
        replace_once("team: vision-lab", "team: vision-lab\nteam: other-lab"),
        "team",
        ["duplicate key"],
        "team: other-lab",
    ),
    (
        "duplicate-nomad",
        replace_once("  - name: grace", "  - name: ada"),
        "nomads[1].name",
        ["duplicate nomad 'ada'"],
        "- name: ada@2",
    ),
    (
        "team-name-no-cloud-accepts",
        replace_once("team: vision-lab", "team: Vision_Lab!"),
        "team",
        ["not a valid team name"],
        "team: Vision_Lab!",
    ),
    (
        "nomad-name-no-cloud-accepts",
        replace_once("  - name: linus", "  - name: Linus.Torvalds"),
        "nomads[2].name",
        ["not a valid nomad name"],
        "Linus.Torvalds",
    ),
    (
        "reserved-nomad-name",
        replace_once("  - name: linus", "  - name: root"),
        "nomads[2].name",
        ["reserved"],
        "- name: root",
    ),
    (
        "private-key-pasted",
        replace_once(ADA_KEY, f'"{PRIVATE_KEY}"'),
        "nomads[0].ssh_key",
        ["private key", "public key"],
        "BEGIN OPENSSH",
    ),
    (
        "damaged-public-key",
        replace_once(ADA_KEY, ADA_KEY.replace("AAAAIJBUE", "AAAAIJBU")),
        "nomads[0].ssh_key",
        ["damaged"],
        "AAAAIJBUUoeL5",
    ),
    (
        "key-path-pasted",
        replace_once(ADA_KEY, "~/.ssh/id_ed25519.pub"),
        "nomads[0].ssh_key",
        ["file path"],
        "~/.ssh/id_ed25519.pub",
    ),
    ("dsa-key", replace_once(ADA_KEY, "ssh-dss AAAAB3NzaC1kc3MAAACBAP ada"), "nomads[0].ssh_key", ["DSA"], "ssh-dss"),
    (
        "unknown-aws-region",
        replace_once(
            "regions: [us-east-1, us-west-2, eu-west-1]", "regions: [us-east-1, us-west-2, eu-west-1, us-east1]"
        ),
        "clouds.aws.regions[3]",
        ["not a AWS region"],
        "us-east1",
    ),
    (
        "region-outside-allowed",
        replace_once("    region: eu-west-1", "    region: eu-central-1"),
        "nomads[0].region",
        ["outside the team's allowed aws regions", "eu-west-1"],
        "region: eu-central-1",
    ),
    (
        "gcp-region-on-aws",
        replace_once("    region: eu-west-1", "    region: europe-west4"),
        "nomads[0].region",
        ["not a AWS region"],
        "region: europe-west4",
    ),
    (
        "unknown-instance-type",
        replace_once("instance_type: g4dn.xlarge", "instance_type: g4dn.xlarg"),
        "nomads[2].instance_type",
        ["not a known aws GPU instance type", "Did you mean 'g4dn.xlarge'"],
        "g4dn.xlarg",
    ),
    (
        "unknown-gpu-profile",
        replace_once("gpu_profile: a10g-24gb", "gpu_profile: a10-24gb"),
        "nomads[0].gpu_profile",
        ["not a aws GPU profile", "Did you mean"],
        "gpu_profile: a10-24gb",
    ),
    (
        "profile-and-type",
        replace_once("    gpu_profile: a10g-24gb", "    gpu_profile: a10g-24gb\n    instance_type: g5.xlarge"),
        "nomads[0]",
        ["either gpu_profile or instance_type"],
        None,
    ),
    (
        "negative-budget",
        replace_once("monthly_usd: 6000", "monthly_usd: -100"),
        "budgets.monthly_usd",
        ["out of range", "greater than 0"],
        "monthly_usd: -100",
    ),
    (
        "absurd-budget",
        replace_once("monthly_usd: 6000", "monthly_usd: 60000000000"),
        "budgets.monthly_usd",
        ["out of range"],
        "monthly_usd: 60000000000",
    ),
    (
        "absurd-hourly-cap",
        replace_once("box_hourly_cap_usd: 8.0", "box_hourly_cap_usd: 5000"),
        "budgets.box_hourly_cap_usd",
        ["out of range"],
        "box_hourly_cap_usd: 5000",
    ),
    (
        "ttl-out-of-range",
        replace_once("    ttl_hours: 168", "    ttl_hours: 0"),
        "nomads[0].ttl_hours",
        ["out of range"],
        "ttl_hours: 0",
    ),
    (
        "ttl-above-policy",
        replace_once("    ttl_hours: 168", "    ttl_hours: 1000"),
        "nomads[0].ttl_hours",
        ["above the team's max_ttl_hours"],
        "ttl_hours: 1000",
    ),
    (
        "idle-minutes-out-of-range",
        replace_once("    idle_minutes: 60", "    idle_minutes: 2"),
        "nomads[0].idle_minutes",
        ["out of range"],
        "    idle_minutes: 2",
    ),
    (
        "idle-above-policy",
        replace_once("    idle_minutes: 60", "    idle_minutes: 600"),
        "nomads[0].idle_minutes",
        ["outside the team's policy"],
        "idle_minutes: 600",
    ),
    (
        "tower-without-address",
        replace_once("    address: 192.0.2.10               # IP or DNS name reachable over SSH\n", ""),
        "towers[0].address",
        ["required but missing"],
        None,
    ),
    (
        "unsupported-os",
        replace_once("os: debian-13 ", "os: debian-11 "),
        "towers[0].os",
        ["'debian-11' is not allowed", "Did you mean 'debian-1"],
        "os: debian-11",
    ),
    (
        "bad-driver-branch",
        replace_once('driver_branch: "550"', 'driver_branch: "55x"'),
        "towers[0].driver_branch",
        ["not an NVIDIA driver branch"],
        'driver_branch: "55x"',
    ),
    (
        "unquoted-version-number",
        replace_once('cuda_version: "12.4"', "cuda_version: 12.4"),
        "towers[0].cuda_version",
        ["must be text", 'Quote it in YAML: "12.4"'],
        "cuda_version: 12.4",
    ),
    (
        "tower-names-unknown-nomad",
        replace_once("nomads: [ada, linus]", "nomads: [ada, linux]"),
        "towers[0].nomads[1]",
        ["not a nomad", "Did you mean 'linus'"],
        "nomads: [ada, linux]",
    ),
    (
        "unknown-tower-gpu",
        replace_once("model: RTX 4090", "model: RTX 9999"),
        "towers[0].gpus[0].model",
        ["not a GPU model the catalog knows"],
        "model: RTX 9999",
    ),
    (
        "bad-timezone",
        replace_once("timezone: Europe/Berlin", "timezone: Europe/Berln"),
        "nomads[0].timezone",
        ["not a time zone", "Europe/Berlin"],
        "Europe/Berln",
    ),
    (
        "bad-account-id",
        replace_once('account_id: "123456789012"', "account_id: 1234"),
        "clouds.aws.account_id",
        ["must be text", "Quote it"],
        "account_id: 1234",
    ),
    (
        "bad-account-id-digits",
        replace_once('account_id: "123456789012"', 'account_id: "12345"'),
        "clouds.aws.account_id",
        ["not an AWS account id"],
        'account_id: "12345"',
    ),
    (
        "bad-backend-url",
        replace_once("backend_url: file://~/.nomadrig/state", "backend_url: ftp://x"),
        "state.backend_url",
        ["not a Pulumi backend URL"],
        "ftp://x",
    ),
    (
        "unknown-rule-id",
        replace_once("COST-004: {severity: mandatory}", "COST-044: {severity: mandatory}"),
        "policy.rules.COST-044",
        ["unknown rule id", "Did you mean 'COST-004'"],
        "COST-044",
    ),
    (
        "bad-severity",
        replace_once("COST-004: {severity: mandatory}", "COST-004: {severity: fatal}"),
        "policy.rules.COST-004.severity",
        ["'fatal' is not allowed", "mandatory"],
        "COST-004: {severity: fatal}",
    ),
    (
        "cloud-not-configured",
        replace_once("    cloud: gcp\n", "    cloud: azure\n"),
        "nomads[1].cloud",
        ["'azure' is not allowed"],
        "cloud: azure",
    ),
    (
        "wrong-type-list",
        replace_once("regions: [us-central1, europe-west4]", "regions: us-central1"),
        "clouds.gcp.regions",
        ["expected a list"],
        "regions: us-central1",
    ),
    (
        "bad-email",
        replace_once("alert_emails: [finance@vision-lab.example]", "alert_emails: [finance]"),
        "budgets.alert_emails",
        ["not an e-mail address"],
        "alert_emails: [finance]",
    ),
    (
        "bool-as-number",
        replace_once("    data_disk_gb: 500", "    data_disk_gb: true"),
        "nomads[0].data_disk_gb",
        ["true is a yes/no value, not a number"],
        "data_disk_gb: true",
    ),
    (
        "infinite-budget",
        replace_once("monthly_usd: 6000", "monthly_usd: .inf"),
        "budgets.monthly_usd",
        ["not a finite number"],
        "monthly_usd: .inf",
    ),
    (
        "nan-usage",
        replace_once("hours_per_day: 8", "hours_per_day: .nan"),
        "usage.hours_per_day",
        ["not a finite number"],
        "hours_per_day: .nan",
    ),
    (
        "integer-past-python-limit",
        replace_once("monthly_usd: 6000", "monthly_usd: " + "9" * 5000),
        "budgets.monthly_usd",
        ["5,000 digits"],
        "monthly_usd: 999",
    ),
    (
        "recursive-alias",
        replace_once("team: vision-lab", "team: &x [*x]"),
        "",
        ["recursive alias"],
        "team: &x",
    ),
    (
        "unknown-rule-param",
        replace_once("COST-004: {severity: mandatory}", "COST-004: {severity: mandatory, params: {warn_at: 90}}"),
        "policy.rules.COST-004.params.warn_at",
        ["has no parameter 'warn_at'", "warn_at_pct (a whole number, 1-100, default 80)"],
        "params: {warn_at: 90}",
    ),
    (
        "rule-param-wrong-type",
        replace_once("COST-004: {severity: mandatory}", "COST-004: {params: {warn_at_pct: true}}"),
        "policy.rules.COST-004.params.warn_at_pct",
        ["yes/no value", "takes a whole number"],
        "warn_at_pct: true",
    ),
    (
        "email-with-a-space",
        replace_once("email: ada@vision-lab.example", 'email: "ada lovelace@vision-lab.example"'),
        "nomads[0].email",
        ["not an e-mail address", "U+0020"],
        "ada lovelace",
    ),
    (
        "key-comment-with-carriage-return",
        replace_once(ADA_KEY, f'"{ADA_KEY.rsplit(" ", 1)[0]} ada\\rcommand=\\"id\\" ssh-ed25519 AAAA"'),
        "nomads[0].ssh_key",
        ["U+000D (carriage return)", "printable ASCII"],
        "ada\\rcommand",
    ),
    (
        "backend-on-another-https-host",
        replace_once("backend_url: file://~/.nomadrig/state", "backend_url: https://state.evil.example"),
        "state.backend_url",
        ["not Pulumi Cloud", "https://api.pulumi.com"],
        "state.evil.example",
    ),
    (
        "ami-id-instead-of-parameter",
        replace_once('ami_parameter: ""', 'ami_parameter: "ami-0123456789abcdef0"'),
        "clouds.aws.ami_parameter",
        ["is an AMI id", "put-parameter"],
        "ami-0123456789abcdef0",
    ),
    (
        "image-family-as-url",
        replace_once('image_family: ""', 'image_family: "https://evil.example/image"'),
        "clouds.gcp.image_family",
        ["not a GCE image family"],
        "evil.example/image",
    ),
    (
        "unattended-gpu-stack-on-nvidias-repository",
        replace_once("gpu_stack_updates: manual", "gpu_stack_updates: unattended").replace(
            "driver_channel: distro", "driver_channel: cuda_repo"),
        "towers[0].gpu_stack_updates",
        ["skips held packages", "driver_channel: distro"],
        "gpu_stack_updates: unattended",
    ),
    (
        "unattended-gpu-stack-on-ubuntu",
        replace_once("gpu_stack_updates: manual", "gpu_stack_updates: unattended").replace(
            "os: debian-13", "os: ubuntu-24.04"),
        "towers[0].gpu_stack_updates",
        ["transitional", "tower apply --upgrade"],
        "gpu_stack_updates: unattended",
    ),
    (
        "tower-name-is-a-nomad",
        replace_once("  - name: basement", "  - name: ada"),
        "towers[0].name",
        ["also a nomad's name"],
        "- name: ada@2",
    ),
]


@pytest.mark.parametrize("case_id,text,field,words,line_needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_with_a_located_message(case_id, text, field, words, line_needle):
    with pytest.raises(BadInputError) as info:
        parse_team(text, "team.yaml")
    message = info.value.render()
    assert message.startswith("team.yaml"), message
    if field:
        assert f": {field}:" in message, message
    for word in words:
        assert word in message, message
    if line_needle is not None:
        needle, _, nth = line_needle.partition("@")
        needle_line = line_of(text, needle, int(nth or 1))
        assert f"team.yaml:{needle_line}:" in message, message
    assert len(message.splitlines()) < 25, "one screen"
    assert "Traceback" not in message


def test_there_are_at_least_25_distinct_bad_input_classes():
    assert len({c[0] for c in CASES}) >= 25


def test_every_problem_is_reported_at_once():
    text = replace_once("    idle_minutes: 60", "    idle_minuts: 60").replace("monthly_usd: 6000", "monthly_usd: -1")
    with pytest.raises(BadInputError) as info:
        parse_team(text, "team.yaml")
    assert len(info.value.problems) == 2, info.value.render()


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(BadInputError) as info:
        load_team(tmp_path / "nope.yaml")
    assert "nope.yaml" in info.value.render() and "no such file" in info.value.render()


def test_short_rsa_key_is_refused():
    import base64
    import struct

    def s(b: bytes) -> bytes:
        return struct.pack(">I", len(b)) + b

    blob = s(b"ssh-rsa") + s(b"\x01\x00\x01") + s(b"\x00" + (1 << 1023).to_bytes(128, "big"))
    key = "ssh-rsa " + base64.b64encode(blob).decode() + " old@laptop"
    with pytest.raises(BadInputError) as info:
        parse_team(EXAMPLE_TEXT.replace(ADA_KEY, key), "team.yaml")
    assert "1024 bits" in info.value.render()


def test_defaults_fill_optional_sections():
    data = yaml.safe_load(EXAMPLE_TEXT)
    for key in ("state", "usage", "policy", "towers"):
        data.pop(key)
    team = parse_team(yaml.safe_dump(data), "team.yaml")
    assert team.state.backend_url == "file://~/.nomadrig/state"
    assert team.policy.allow_public_ip is False
    assert re.match(r"\d", str(team.usage.hours_per_day))


def test_a_team_read_back_with_numbers_as_floats_is_the_same_team():
    """Pulumi hands a dynamic provider its inputs with every number a float (stacks/tower.py validates them)."""
    team = load_team(EXAMPLE)

    def floats(value):
        if isinstance(value, dict):
            return {k: floats(v) for k, v in value.items()}
        if isinstance(value, list):
            return [floats(v) for v in value]
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value

    assert type(team).model_validate(floats(team.model_dump(mode="json"))) == team
