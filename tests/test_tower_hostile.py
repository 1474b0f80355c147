"""Team-file text reaches Ansible inert, and the caller's secrets never reach a run's files.

Both guarantees are proven through the real path: ``nomadrig.towers.run`` writes
the inventory and variables and starts the real ansible-playbook through
ansible-runner, against localhost (the test playbooks say ``connection: local``,
so nothing is reached over SSH and the machine is not changed: check mode, or
only ``debug`` tasks). The team is built with ``model_copy``, which skips
validation, so these tests hold for whatever text gets past the team-file
checks, today or after a field is added; the last tests show what those checks
refuse on their own.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nomadrig import towers
from nomadrig.errors import BadInputError
from nomadrig.team.load import load_team, parse_team
from nomadrig.team.model import LINUX_USER_RE, Team

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "team.yaml"

#: Each payload runs a command (touching CANARY) or computes something if Ansible evaluates it.
PAYLOADS = {
    "expression": "{{ lookup('ansible.builtin.pipe', 'touch CANARY') }}",
    "statement": "{% set x = lookup('ansible.builtin.pipe', 'touch CANARY') %}after",
    "shell": "$(touch CANARY) `touch CANARY`",
    "layout": "a\nb: {{ lookup('ansible.builtin.pipe', 'touch CANARY') }}\r\x0b\x0c\x85\u2028\u2029 'q' \"dq\" #c &a *b !t",
    "arithmetic": "{{ 7 * 7 }}{% if true %} x {% endif %}{# gone #}",
}
#: The tower's name becomes a directory name, so its payload has no slash (equality shows it stayed inert).
NAME_PAYLOAD = "{{ lookup('ansible.builtin.pipe', 'id') }}{% if true %}x{% endif %}$(id)\n`id`"

#: Variables the playbook reports from the inventory, beside every variable tower_vars() makes.
INVENTORY_VARS = (
    "ansible_host",
    "ansible_port",
    "ansible_user",
    "ansible_ssh_private_key_file",
    "ansible_ssh_extra_args",
    "inventory_hostname",
)
SHOW_TASK = "Show every variable nomadrig passed"


def hostile(payload: str, canaries: Path, field: str) -> str:
    """payload for one field, its canary file named after the field (so a leak names its field)."""
    return payload.replace("CANARY", str(canaries / field.replace("/", "_")))


def hostile_team(payload: str, canaries: Path) -> Team:
    """The example team with payload in every string field that reaches tower_vars() or inventory().

    driver_branch, kernel_modules, cuda_version and python reach the roles only as the values of the
    compatibility matrix's install plan; text that is not one is refused before Ansible runs
    (test_install_fields_reach_ansible_only_as_the_matrix_values).
    """
    team = load_team(EXAMPLE)

    def value(field: str) -> str:
        return hostile(payload, canaries, field)

    nomads = [
        n.model_copy(
            update={
                "name": value(f"nomads[{i}].name"),
                "ssh_key": "ssh-ed25519 AAAA " + value(f"nomads[{i}].ssh_key"),
                "email": value(f"nomads[{i}].email"),
                "wireguard_public_key": value(f"nomads[{i}].wireguard_public_key"),
            }
        )
        for i, n in enumerate(team.nomads)
    ]
    names = [n.name for n in nomads]
    tower = team.towers[0].model_copy(
        update={
            "name": NAME_PAYLOAD,
            "address": value("towers[0].address"),
            "ssh_user": value("towers[0].ssh_user"),
            "nomads": names[:2],
            "admins": [names[0]],
            "docker_users": [names[1]],
            "gpu_containers": True,
        }
    )
    return team.model_copy(update={"nomads": nomads, "towers": [tower]})


def hostile_overrides(payload: str, canaries: Path) -> dict[str, Any]:
    """Overrides (`-e` on the command line) with the payload as a value, nested too."""
    return {
        "agent_note": hostile(payload, canaries, "override"),
        "frameworks_extra": [hostile(payload, canaries, "override-list"), {"k": hostile(payload, canaries, "dict")}],
    }


def make_project(root: Path, tasks: list[dict[str, Any]]) -> Path:
    """A project root whose playbooks/tower.yml runs tasks on the towers group, locally, with the real roles."""
    (root / "playbooks").mkdir(parents=True)
    (root / "roles").symlink_to(REPO / "roles")
    play = {
        "name": "Run the test tasks on the tower, here",
        "hosts": "towers",
        "connection": "local",
        "gather_facts": False,
        # The inventory says "auto_silent", which may find another Python on this machine.
        "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"},
        "tasks": tasks,
    }
    (root / "playbooks" / "tower.yml").write_text(yaml.safe_dump([play], sort_keys=False))
    return root


def show_task(names: list[str]) -> dict[str, Any]:
    """A debug task whose message maps each variable name to its value as Ansible sees it."""
    return {"name": SHOW_TASK, "ansible.builtin.debug": {"msg": {name: "{{ " + name + " }}" for name in names}}}


def task_results(run_dir: str, task: str) -> list[dict[str, Any]]:
    """The results of a task's successful runs, from ansible-runner's job events."""
    found = []
    for path in Path(run_dir).glob("artifacts/*/job_events/*.json"):
        event = json.loads(path.read_text())
        data = event.get("event_data", {})
        if event.get("event") == "runner_on_ok" and data.get("task") == task:
            found.append(data["res"])
    return found


@pytest.mark.parametrize("payload", list(PAYLOADS.values()), ids=list(PAYLOADS))
def test_team_text_reaches_ansible_byte_for_byte_and_runs_nothing(payload: str, tmp_path: Path) -> None:
    canaries = tmp_path / "canaries"
    canaries.mkdir()
    team = hostile_team(payload, canaries)
    tower = team.towers[0]
    overrides = hostile_overrides(payload, canaries)
    key_file = Path(hostile(payload, canaries, "key"))
    expected = towers.tower_vars(team, tower, overrides=overrides)
    host = towers.inventory(tower, ssh_key_file=key_file)["towers"]["hosts"][tower.name]
    expected.update({name: value for name, value in host.items() if name in INVENTORY_VARS})
    expected["inventory_hostname"] = tower.name
    project = make_project(tmp_path / "project", [show_task(sorted(expected))])

    options = towers.RunOptions(
        ssh_key_file=key_file, overrides=overrides, runs_dir=tmp_path / "runs", project_root=project
    )
    report = towers.run(team, tower.name, "check", options)

    assert not list(canaries.iterdir()), f"a template or command ran: {sorted(p.name for p in canaries.iterdir())}"
    assert report.succeeded, report.summary()
    shown = task_results(report.run_dir, SHOW_TASK)
    assert len(shown) == 1, f"the debug task did not report once: {report.summary()}"
    assert shown[0]["msg"] == json.loads(json.dumps(expected))


@pytest.mark.skipif(os.geteuid() != 0, reason="the accounts tasks read /etc/sudoers.d, which needs root")
def test_the_accounts_loop_keeps_team_text_inert_in_check_mode(tmp_path: Path) -> None:
    """The real roles/base accounts tasks (the loop the issue found), in check mode: nothing changes here."""
    canaries = tmp_path / "canaries"
    canaries.mkdir()
    payload = PAYLOADS["expression"] + PAYLOADS["statement"] + PAYLOADS["shell"] + "\n\r\u2028"
    team = hostile_team(payload, canaries)
    include = {
        "name": "Run the base role's account tasks",
        "ansible.builtin.include_role": {"name": "base", "tasks_from": "accounts.yml"},
    }
    project = make_project(tmp_path / "project", [include])
    options = towers.RunOptions(runs_dir=tmp_path / "runs", project_root=project)

    report = towers.run(team, team.towers[0].name, "check", options)

    assert not list(canaries.iterdir()), f"a template or command ran: {sorted(p.name for p in canaries.iterdir())}"
    assert report.succeeded, report.summary()
    assert any("Create or update one account per nomad" in task for task in report.changed_tasks), report.summary()


# -- secrets ------------------------------------------------------------------------------

SECRET_NAMES = (
    "NOMADRIG_PASSPHRASE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "GOOGLE_OAUTH_ACCESS_TOKEN",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "PULUMI_ACCESS_TOKEN",
    "PULUMI_CONFIG_PASSPHRASE",
    "GITHUB_TOKEN",
    "SOME_SERVICE_SECRET",
    "DATABASE_PASSWORD",
    "OPENAI_API_KEY",
    "ANSIBLE_GALAXY_SERVER_TEAM_TOKEN",
    "UNRELATED_SETTING",  # not secret-looking: an allowlist drops it all the same
)


class KeptTemporaryDirectory:
    """tempfile.TemporaryDirectory that stays, so what read_tower_public_key's run wrote can be searched."""

    def __init__(self, *args: Any, prefix: str | None = None, **kwargs: Any) -> None:
        self.name = tempfile.mkdtemp(prefix=prefix)

    def __enter__(self) -> str:
        return self.name

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.fixture
def secret_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, dict[str, str]]]:
    """A home (and temporary directory) of its own, and unique secret values in the environment."""
    home = tmp_path / "home"
    (home / "tmp").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TMPDIR", str(home / "tmp"))
    monkeypatch.setattr(tempfile, "tempdir", str(home / "tmp"))
    monkeypatch.setattr(tempfile, "TemporaryDirectory", KeptTemporaryDirectory)
    values = {name: f"s3cr3t-{secrets.token_hex(12)}" for name in SECRET_NAMES}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    yield home, values


def files_holding(root: Path, values: dict[str, str]) -> dict[str, list[str]]:
    """Each secret's name -> the files under root whose bytes contain its value."""
    found: dict[str, list[str]] = {}
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            for name, value in values.items():
                if value.encode() in data:
                    found.setdefault(name, []).append(str(path.relative_to(root)))
    return found


def test_no_secret_of_the_environment_reaches_any_file_of_a_run(secret_home: tuple[Path, dict[str, str]]) -> None:
    home, values = secret_home
    team = load_team(EXAMPLE)
    # Port 1 on loopback refuses at once: the public-key read after apply fails fast and quietly.
    tower = team.towers[0].model_copy(update={"address": "127.0.0.1", "ssh_port": 1})
    team = team.model_copy(update={"towers": [tower]})
    project = make_project(home / "project", [show_task(["ansible_user", "base_nomads"])])
    options = towers.RunOptions(project_root=project)  # the default runs dir: ~/.nomadrig/runs

    reports = [towers.run(team, tower.name, mode, options) for mode in ("check", "apply")]

    assert all(r.succeeded for r in reports), [r.summary() for r in reports]
    commands = list(home.rglob("artifacts/*/command"))
    assert len(commands) == 3, f"expected check, apply and the public-key read: {commands}"
    assert files_holding(home, values) == {}
    for command in commands:
        child_env = json.loads(command.read_text())["env"]
        assert not set(child_env) & set(SECRET_NAMES), command


def test_the_child_environment_is_an_allowlist() -> None:
    inherited = {
        "PATH": "/usr/bin",
        "HOME": "/home/ada",
        "LC_ALL": "C.UTF-8",
        "SSH_AUTH_SOCK": "/run/agent",
        "ANSIBLE_SSH_COMMON_ARGS": "-o ConnectTimeout=5",
        "ANSIBLE_VAULT_PASSWORD": "hunter2",
        "AWS_SECRET_ACCESS_KEY": "abc",
        "EDITOR": "vi",
    }
    ours = {"ANSIBLE_ROLES_PATH": "/repo/roles", "ANSIBLE_HOST_KEY_CHECKING": "True"}
    child = {**inherited, **ours, "ANSIBLE_STDOUT_CALLBACK": "awx_display"}  # the last one: ansible-runner's own

    kept = towers.scrubbed_env(child, inherited, ours)

    assert set(kept) == {
        "PATH",
        "HOME",
        "LC_ALL",
        "SSH_AUTH_SOCK",
        "ANSIBLE_SSH_COMMON_ARGS",
        "ANSIBLE_ROLES_PATH",
        "ANSIBLE_HOST_KEY_CHECKING",
        "ANSIBLE_STDOUT_CALLBACK",
    }


# -- what validation refuses on its own ---------------------------------------------------------

HOSTILE_FRAGMENTS = st.sampled_from(
    ["{{", "}}", "{%", "%}", "$(", "`", "\n", "\r", "\x0b", "\u2028", "\x00", "'", '"', " ", "%", "-o", "/", ";"]
)
HOSTILE_TEXT = st.lists(st.one_of(HOSTILE_FRAGMENTS, st.text(max_size=8)), min_size=1, max_size=6).map("".join)


def team_text_with_tower(**fields: Any) -> str:
    """The example team file with fields of its tower replaced (through YAML, so any string is written)."""
    data = yaml.safe_load(EXAMPLE.read_text())
    data["towers"][0].update(fields)
    return yaml.safe_dump(data, allow_unicode=True)


#: What an accepted value of each field that reaches ssh's command line looks like.
ACCEPTED_SHAPE = {
    "ssh_user": lambda value: LINUX_USER_RE.fullmatch(value) is not None,
    "address": lambda value: not set(value) & set("{}%$`'\" \n\r\x0b/;[]") and not value.startswith("-"),
}


@pytest.mark.parametrize("field", sorted(ACCEPTED_SHAPE))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=HOSTILE_TEXT)
def test_a_tower_connection_field_is_well_shaped_or_refused_by_name(field: str, value: str) -> None:
    try:
        team = parse_team(team_text_with_tower(**{field: value}), "team.yaml")
    except BadInputError as error:
        assert error.exit_code == 2
        assert any(p.path == f"towers[0].{field}" and p.fix for p in error.problems), error.render()
        return
    accepted = getattr(team.towers[0], field)
    assert ACCEPTED_SHAPE[field](accepted), accepted


@pytest.mark.parametrize(
    "field, value",
    [
        ("ssh_user", "{{ lookup('ansible.builtin.pipe','id > /tmp/x; echo admin') }}"),
        ("ssh_user", "admin\nProxyCommand x"),
        ("address", "-oProxyCommand=id"),
        ("address", "192.0.2.10 {{ 7*7 }}"),
        ("address", "fe80::1%eth0"),
        ("address", "[2001:db8::1]"),
    ],
)
def test_validation_refuses_the_shapes_the_issue_found(field: str, value: str) -> None:
    with pytest.raises(BadInputError) as error:
        parse_team(team_text_with_tower(**{field: value}), "team.yaml")
    problems = [p for p in error.value.problems if p.path == f"towers[0].{field}"]
    assert problems and problems[0].fix and problems[0].line, error.value.render()


@pytest.mark.parametrize("field", ["driver_branch", "cuda_version", "python", "kernel_modules"])
def test_install_fields_reach_ansible_only_as_the_matrix_values(field: str, tmp_path: Path) -> None:
    """Hostile text in a field the install plan reads (validation bypassed) is refused by name; nothing runs."""
    canaries = tmp_path / "canaries"
    canaries.mkdir()
    team = load_team(EXAMPLE)
    payload = hostile("{{ lookup('pipe', 'touch CANARY') }}", canaries, field)
    tower = team.towers[0].model_copy(update={field: payload})
    team = team.model_copy(update={"towers": [tower]})
    with pytest.raises(BadInputError) as error:
        towers.tower_vars(team, tower)
    assert f"towers[0].{field}" in error.value.render()
    assert not list(canaries.iterdir())
