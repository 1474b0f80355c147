"""What nomadrig reads back from the cloud and from shared stack state is data, never code or markup.

Stack outputs live in Pulumi state the whole team shares (a bucket), and land
in every teammate's ``~/.ssh/config``, some inside a ProxyCommand that a shell
runs. Tags, names and catalog rows are printed in rich tables. Here hostile
values go through the real commands: ssh-config must refuse the whole write
(exit 3, the file byte for byte as it was) or come out as exactly the
directives meant; tables and lines must print ``[bold red]x[/]`` and ``[/]``
as written.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from nomadrig.spec import box_specs
from nomadrig.sshconfig import (
    HOST_DIRECTIVES,
    StackOutputError,
    box_accesses,
    parse_directives,
    render_block,
)
from nomadrig.team.load import load_team
from tests.fake_pulumi import FakePulumi

REPO = Path(__file__).resolve().parent.parent
TEAM_FILE = REPO / "examples" / "team.yaml"
# Named after the checkout, not the process: the values below are in the test ids, which every xdist worker
# must collect alike; two checkouts tested at once still get two canaries.
CANARY = Path(f"/tmp/nomadrig-outputs-canary-{hashlib.sha256(bytes(REPO)).hexdigest()[:12]}")
MARKUP = ("[bold red]x[/]", "[/]", "[link=https://evil.example]click[/link]")

USER_CONFIG = "# mine\nHost github.com\n    User git\n"
AWS_OK = {"instance_id": "i-0123456789abcdef0", "data_volume_id": "vol-0123456789abcdef0"}
GCP_OK = {"instance_name": "vision-lab--grace", "zone": "us-central1-b", "project": "vision-lab-research"}

HOSTILE_VALUES = [
    "i-0123456789abcdef0\nProxyCommand touch " + str(CANARY),
    "i-0123456789abcdef0\nHost *\n    ForwardAgent yes",
    "$(touch " + str(CANARY) + ")",
    "`touch " + str(CANARY) + "`",
    "x; touch " + str(CANARY),
    "%h%p",
    "i-0123456789abcdef0\r",
    "i-0123456789abcdef0\u2028Host *",
    "vision-lab--grace\x0bForwardAgent yes",
    "a" * 5000,
    "[bold red]x[/]",
    "",  # empty: "not deployed", which is fine, so the list also holds non-strings below
]
NON_STRINGS: list[Any] = [123, ["i-0123456789abcdef0"], {"id": "i-0123456789abcdef0"}, True]


@pytest.fixture(autouse=True)
def _no_canary():
    CANARY.unlink(missing_ok=True)
    yield
    assert not CANARY.exists(), "a stack output was run by a shell"


@pytest.fixture
def specs():
    return box_specs(load_team(TEAM_FILE))  # ada (aws eu-west-1), grace (gcp us-central1), linus (aws us-east-1)


def outputs_with(cloud_key: tuple[str, str], value: Any) -> dict[str, Any]:
    """The example team's outputs with one value replaced: ("aws"|"gcp", output key)."""
    cloud, key = cloud_key
    return {
        "vision-lab--ada": {**AWS_OK, **({key: value} if cloud == "aws" else {})},
        "vision-lab--grace": {**GCP_OK, **({key: value} if cloud == "gcp" else {})},
        "vision-lab--linus": None,
    }


# -- ssh-config: every output checked against the cloud's real shapes -----------------------------

OUTPUT_KEYS = [("aws", "instance_id"), ("aws", "ssh_user"), ("gcp", "instance_name"), ("gcp", "zone"),
               ("gcp", "project"), ("gcp", "ssh_user")]


@pytest.mark.parametrize("cloud_key", OUTPUT_KEYS, ids=lambda k: "-".join(k))
@pytest.mark.parametrize("value", [v for v in HOSTILE_VALUES if v] + NON_STRINGS, ids=repr)
def test_an_output_without_its_cloud_shape_refuses_the_whole_block(specs, cloud_key, value):
    with pytest.raises(StackOutputError) as caught:
        box_accesses(specs, outputs_with(cloud_key, value))
    stack = "vision-lab--ada" if cloud_key[0] == "aws" else "vision-lab--grace"
    message = str(caught.value)
    assert f"stack {stack}: output {cloud_key[1]} = " in message
    assert repr(value)[:40] in message  # the bad value, escaped (no raw newline reaches the terminal)
    assert caught.value.exit_code == 3


@pytest.mark.parametrize(
    ("cloud_key", "value"),
    [
        (("aws", "instance_id"), "i-0123abcd"),  # the older 8-digit ids
        (("aws", "instance_id"), "i-0123456789abcdef0"),
        (("gcp", "instance_name"), "a"),
        (("gcp", "instance_name"), "b" + "0" * 62),
        (("gcp", "zone"), "northamerica-northeast1-a"),
        (("gcp", "project"), "example.com:ml-research"),  # a domain-scoped project
        (("gcp", "ssh_user"), "grace_vision_lab_example"),  # an OS Login name
    ],
)
def test_real_cloud_shapes_are_accepted(specs, cloud_key, value):
    block = render_block("vision-lab", box_accesses(specs, outputs_with(cloud_key, value)))
    assert value in block


@pytest.mark.parametrize(
    ("cloud_key", "value"),
    [
        (("aws", "instance_id"), "i-0123456789ABCDEF0"),  # EC2 ids are lowercase
        (("aws", "instance_id"), "i-0123456789abcdef"),  # 16 digits
        (("gcp", "instance_name"), "b" + "0" * 63),  # 64 characters
        (("gcp", "instance_name"), "box-"),
        (("gcp", "zone"), "us-central1"),  # a region, not a zone
        (("gcp", "project"), "short"),
        (("aws", "ssh_user"), "-oProxyCommand=x"),
    ],
)
def test_near_misses_of_the_shapes_are_refused(specs, cloud_key, value):
    with pytest.raises(StackOutputError):
        box_accesses(specs, outputs_with(cloud_key, value))


def fake_tools(directory: Path) -> Path:
    """`aws` and `gcloud` stand-ins that print their arguments as JSON (the shell already split them)."""
    directory.mkdir()
    for tool in ("aws", "gcloud"):
        script = directory / tool
        script.write_text('#!/bin/sh\nexec python3 -c \'import json, sys; print(json.dumps(sys.argv[1:]))\' "$@"\n')
        script.chmod(0o755)
    return directory


def run_proxy_command(command: str, hostname: str, tools: Path) -> list[str]:
    """Expand ssh's %h / %p / %% tokens as ssh does, then run it the way ssh does: `sh -c "exec ..."`."""
    expanded = command.replace("%%", "\0").replace("%h", hostname).replace("%p", "22").replace("\0", "%")
    python_dir = str(Path(shutil.which("python3") or "/usr/bin/python3").parent)
    done = subprocess.run(["/bin/sh", "-c", f"exec {expanded}"], capture_output=True, text=True, check=True,
                          env={"PATH": f"{tools}:{python_dir}:/usr/bin:/bin"}, timeout=30)
    return json.loads(done.stdout)


def test_the_proxy_commands_pass_each_value_as_one_argument(specs, tmp_path):
    tools = fake_tools(tmp_path / "bin")
    outputs = outputs_with(("gcp", "project"), "example.com:ml-research")
    accesses = {a.nomad: a for a in box_accesses(specs, outputs)}

    gcp = run_proxy_command(accesses["grace"].proxy_command, "vision-lab--grace", tools)
    aws = run_proxy_command(accesses["ada"].proxy_command, "i-0123456789abcdef0", tools)

    assert gcp == ["compute", "start-iap-tunnel", "vision-lab--grace", "22", "--listen-on-stdin",
                   "--project=example.com:ml-research", "--zone=us-central1-b"]
    assert aws == ["ssm", "start-session", "--target", "i-0123456789abcdef0", "--document-name",
                   "AWS-StartSSHSession", "--parameters", "portNumber=22", "--region", "eu-west-1"]


hostile_text = st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from([v for v in HOSTILE_VALUES if v] + ["i-", "0123456789abcdef0", "-b", "\n"]),
             min_size=1, max_size=4).map("".join),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(OUTPUT_KEYS), value=hostile_text)
def test_any_output_is_refused_or_renders_exactly_the_meant_directives(specs, key, value):
    try:
        accesses = box_accesses(specs, outputs_with(key, value))
    except StackOutputError:
        return
    block = render_block("vision-lab", accesses)
    directives = parse_directives(block)
    hosts = [v for k, v in directives if k == "Host"]
    assert hosts == [a.alias for a in accesses if a.hostname]
    assert [k for k, _ in directives if k != "Host"] == list(HOST_DIRECTIVES) * len(hosts)
    assert len(block.splitlines()) == block.count("\n")


def team_with_home(monkeypatch, tmp_path) -> Path:
    home = tmp_path / "user-home"
    (home / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    return home


def run_cli(*args: str, team: Path = TEAM_FILE):
    from nomadrig.cli import app

    return CliRunner().invoke(app, [*args, "--team", str(team)], env={"COLUMNS": "250"})


@pytest.mark.parametrize(
    ("nomad", "key", "value"),
    [
        ("ada", "instance_id", "i-0123456789abcdef0\nHost *\n    ForwardAgent yes"),
        ("ada", "instance_id", "i-0123456789abcdef0\nProxyCommand touch " + str(CANARY)),
        ("grace", "instance_name", "$(touch " + str(CANARY) + ")"),
        ("grace", "zone", "us-central1-b --impersonate-service-account=evil@x.iam"),
        ("grace", "project", "[bold red]x[/]"),
    ],
)
def test_cli_write_with_a_hostile_output_exits_3_and_leaves_the_file_byte_for_byte(
    monkeypatch, tmp_path, nomad, key, value
):
    fake = FakePulumi.install(monkeypatch, tmp_path)
    stack = f"vision-lab--{nomad}"
    fake.scenario(outputs={stack: {**(AWS_OK if nomad == "ada" else GCP_OK), key: value}})
    home = team_with_home(monkeypatch, tmp_path)
    config = home / ".ssh" / "config"
    config.write_text(USER_CONFIG)
    assert run_cli("ssh-config", "--write").exit_code == 0  # nothing deployed yet: a block of notes
    before = config.read_bytes()
    backup = home / ".ssh" / "config.nomadrig.bak"
    backup_before = backup.read_bytes()
    assert run_cli("up", nomad, "--yes").exit_code == 0

    written = run_cli("ssh-config", "--write")
    printed = run_cli("ssh-config")
    as_json = run_cli("ssh-config", "--json")

    assert written.exit_code == 3, written.output
    assert f"stack {stack}: output {key} = {repr(value)[:40]}" in written.output
    assert "was not changed" in written.output
    assert config.read_bytes() == before
    assert backup.read_bytes() == backup_before, "a refused write must not touch the backup either"
    assert sorted(p.name for p in (home / ".ssh").iterdir()) == ["config", "config.nomadrig.bak"]
    assert printed.exit_code == 3 and "Host " not in printed.stdout, "the block must not be printed either"
    assert as_json.exit_code == 3 and set(json.loads(as_json.stdout)) == {"error"}, "--json prints only the error object"


# -- rich markup: user and cloud text prints as written ------------------------------------------


def assert_literal(output: str, *values: str) -> None:
    for value in values:
        assert value in output, f"{value!r} was not printed as written:\n{output}"


def test_ls_prints_stack_outputs_as_written(monkeypatch, tmp_path):
    fake = FakePulumi.install(monkeypatch, tmp_path)
    fake.scenario(outputs={"vision-lab--ada": {**AWS_OK, "instance_type": "[bold red]x[/]", "region": "[/]"}})
    assert run_cli("up", "ada", "--yes").exit_code == 0
    result = run_cli("ls")
    assert result.exit_code == 0, result.output
    assert_literal(result.stdout, "[bold red]x[/]", "[/]")


def hostile_catalog(tmp_path: Path, monkeypatch) -> Path:
    """The shipped catalog with g4dn.xlarge renamed to markup and a tower build named like markup."""
    from nomadrig.catalog import DEFAULT_DATA_DIR

    catalog = tmp_path / "catalog"
    shutil.copytree(DEFAULT_DATA_DIR, catalog)
    for name in ("instance_types.csv", "prices.csv", "profiles.csv"):
        path = catalog / name
        path.write_text(path.read_text().replace("g4dn.xlarge", "[bold red]g4dn[/]"))
    towers = catalog / "towers.csv"
    towers.write_text(towers.read_text().replace("1x-rtx4090,", "[/],", 1))
    monkeypatch.setenv("NOMADRIG_CATALOG", str(catalog))
    return catalog


def test_catalog_tables_print_rows_as_written(monkeypatch, tmp_path):
    hostile_catalog(tmp_path, monkeypatch)
    from nomadrig.cli import app

    types = CliRunner().invoke(app, ["catalog", "--cloud", "aws"], env={"COLUMNS": "250"})
    towers = CliRunner().invoke(app, ["catalog", "--towers"], env={"COLUMNS": "250"})
    assert types.exit_code == 0 and towers.exit_code == 0, (types.output, towers.output)
    assert_literal(types.stdout, "[bold red]g4dn[/]")
    assert_literal(towers.stdout, "[/]")


def test_cost_table_prints_instance_types_as_written(monkeypatch, tmp_path):
    hostile_catalog(tmp_path, monkeypatch)
    data = yaml.safe_load(TEAM_FILE.read_text())
    linus = next(n for n in data["nomads"] if n["name"] == "linus")
    linus["instance_type"] = "[bold red]g4dn[/]"
    team = tmp_path / "team.yaml"
    team.write_text(yaml.safe_dump(data, sort_keys=False))
    result = run_cli("cost", team=team)
    assert result.exit_code in (0, 1), result.output  # 1: a policy verdict, still printed
    assert_literal(result.stdout, "[bold red]g4dn[/]")


class MarkupCloud:
    """A ReaperCloud double whose instances carry markup in their tags and names."""

    cloud = "aws"

    def __init__(self, now: datetime) -> None:
        from nomadrig.reaper import ManagedInstance

        def box(iid: str, name: str, **tags: str) -> ManagedInstance:
            base = {"managed": "true", "team": "vision-lab", "owner": "[bold red]x[/]", "ttl": "48",
                    "created": (now - timedelta(hours=1)).isoformat()}
            return ManagedInstance("aws", "eu-west-1", "eu-west-1", iid, name, "stopped", "g5.xlarge",
                                   now - timedelta(days=2), now - timedelta(hours=1), {**base, **tags}, ("vol-1",))

        self.instances = [box("i-0aaaaaaaaaaaaaaa1", "[/]"), box("i-0aaaaaaaaaaaaaaa2", "ok", ttl="[/]")]

    def list_instances(self, team: str) -> list:
        return self.instances

    def cpu_windows(self, instances, minutes, now) -> dict:
        return {}


class NoStacks:
    def list(self) -> list:
        from nomadrig.reaper import StackRef

        return [StackRef("vision-lab--ada", "ada", "aws", "eu-west-1", "i-0aaaaaaaaaaaaaaa1")]

    def destroy(self, name: str) -> None:
        raise AssertionError("a dry run destroys nothing")


def test_reap_prints_tags_and_names_as_written(monkeypatch):
    import nomadrig.engine
    import nomadrig.reaper.run

    cloud = MarkupCloud(datetime.now(UTC))
    monkeypatch.setattr(nomadrig.reaper.run, "default_clouds", lambda team: (cloud, None))
    monkeypatch.setattr(nomadrig.engine, "box_stacks", lambda team, console=None: NoStacks())
    result = run_cli("reap", "--all")
    assert result.exit_code == 0, result.output
    assert_literal(result.stdout, "[bold red]x[/]", "[/]")
    assert "kept: unreadable tag nomadrig:ttl='[/]'" in result.stdout


def test_ssh_config_error_prints_the_bad_value_as_written(monkeypatch, tmp_path):
    fake = FakePulumi.install(monkeypatch, tmp_path)
    fake.scenario(outputs={"vision-lab--ada": {**AWS_OK, "instance_id": "[bold red]x[/]"}})
    team_with_home(monkeypatch, tmp_path)
    assert run_cli("up", "ada", "--yes").exit_code == 0
    result = run_cli("ssh-config")
    assert result.exit_code == 3
    assert_literal(result.output, "'[bold red]x[/]'")
