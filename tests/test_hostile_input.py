"""Hostile text in any team-file string field is refused or comes out inert in every artefact.

A team file is edited by many people, often through pull requests, so every
string in it is hostile until validated. For every string field of the team
model (found by walking the model, so a field added later is covered without
editing this test), hypothesis generates text made of the pieces that break
generators: line breaks of every kind, NUL, Jinja and Ansible template syntax,
shell substitutions, quotes, YAML and ssh_config syntax, very long values. Each
value either stops at validation (exit 2, the field named) or goes through the
real generators and comes out as data: the cloud-init user data has the same
keys and the same user, the ssh config block the same hosts and directives, and
the canary command never runs. Values that validation accepts also go through
the real Pulumi programs (the user data the instances carry) and, with
validation bypassed, generated text in every tower field goes through Ansible
itself. Stack outputs and cloud tags have their own generated tests:
tests/test_outputs_hostile.py (ssh config, tables) and
tests/test_reaper_bad_tags.py (the reaper).
"""

from __future__ import annotations

import copy
import json
import os
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from nomadrig import towers
from nomadrig.errors import BadInputError
from nomadrig.spec import box_specs
from nomadrig.sshconfig import box_accesses, render_block
from nomadrig.team.load import parse_team
from nomadrig.team.model import Team
from nomadrig.team.problems import yaml_keys
from nomadrig.userdata import render_user_data
from nomadrig.yamlmap import PathKey, format_path
from tests.test_tower_hostile import (
    INVENTORY_VARS,
    SHOW_TASK,
    hostile_overrides,
    hostile_team,
    make_project,
    show_task,
    task_results,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "team.yaml"
#: Created by any hostile value that gets evaluated by a shell or a template engine.
CANARY = Path(f"/tmp/nomadrig-hostile-canary-{os.getpid()}")
COMMAND = f"touch {CANARY}"

HOSTILE_PIECES = (
    "\n", "\r", "\r\n", "\x0b", "\x0c", "\x85", "\u2028", "\u2029", "\x00", "\t", "\x1b[31m",
    "{{ lookup('ansible.builtin.pipe', '" + COMMAND + "') }}",
    "{{ '" + COMMAND + "' }}", "{% if true %}x{% endif %}", "{#", "{{", "}}",
    f"$({COMMAND})", f"`{COMMAND}`", f"; {COMMAND}; ", "${HOME}", "%h %p",
    "'", '"', "\\", "#", ": ", "- ", "[", "]", "&anchor", "*alias", "!unsafe ", "!!python/object ",
    "\nHost *\n    ForwardAgent yes\n", "\nProxyCommand " + COMMAND + "\n",
    "\nruncmd:\n  - " + COMMAND + "\n", "\nbootcmd: [" + COMMAND + "]\n",
    "ALL=(ALL) NOPASSWD:ALL", 'command="' + COMMAND + '" ',
)

hostile_text = st.one_of(
    st.lists(st.one_of(st.sampled_from(HOSTILE_PIECES), st.text(max_size=6)), min_size=1, max_size=5).map("".join),
    st.sampled_from(HOSTILE_PIECES).map(lambda piece: "a" * 5000 + piece),
)

#: Stack outputs a deployed box would have: valid shapes, so only the team file varies here.
DEPLOYED = {"aws": {"instance_id": "i-0123456789abcdef0"},
            "gcp": {"instance_name": "nomadrig-box", "zone": "us-central1-a"}}
SSH_DIRECTIVES = {"Host", "HostName", "User", "ProxyCommand", "LocalForward", "ServerAliveInterval"}


def example_data() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE.read_text())


# -- which fields are strings ------------------------------------------------------------------


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _holds_text(annotation: Any) -> bool:
    if annotation is str or typing.get_origin(annotation) is typing.Literal:
        return True
    return typing.get_origin(annotation) is not dict and any(_holds_text(a) for a in typing.get_args(annotation))


def string_fields(model: type[BaseModel] = Team, prefix: PathKey = ()) -> Iterator[PathKey]:
    """Every place in a team file where text goes: str fields, list items, mapping keys.

    Lists are entered at index 0 (the example has an entry there, or the test makes one).
    """
    for name, info in yaml_keys(model).items():  # the keys a file writes (Team.name is `team:`)
        annotation = info.annotation
        path = (*prefix, name)
        origin = typing.get_origin(annotation)
        if origin is dict:
            yield (*path, "<key>")
            values = typing.get_args(annotation)[1]
            for inner in _models_in(values):
                yield from string_fields(inner, (*path, EXISTING_KEY.get(name, "x")))
            if _holds_text(values):
                yield (*path, EXISTING_KEY.get(name, "x"))
            continue
        inner_models = _models_in(annotation)
        listed = origin is list or any(typing.get_origin(a) is list for a in typing.get_args(annotation))
        if inner_models:
            for inner in inner_models:
                yield from string_fields(inner, (*path, 0) if listed else path)
        elif _holds_text(annotation):
            yield (*path, 0) if listed else path


#: A mapping's fields are entered under a key the example has, so the value itself is what is tested.
EXISTING_KEY = {"rules": "COST-004"}
FIELDS = sorted(set(string_fields()), key=format_path)


def put(data: dict[str, Any], path: PathKey, value: str) -> dict[str, Any]:
    """A copy of data with value at path; an SSH key keeps a valid body and gets value as its comment."""
    data = copy.deepcopy(data)
    node: Any = data
    for part, nxt in zip(path, path[1:], strict=False):
        if part == "<key>":
            node = node.setdefault(value, {})
            continue
        if isinstance(part, int):
            if not node:
                node.append({} if not isinstance(nxt, int) else [])
            node = node[part]
            continue
        if node.get(part) is None:
            node[part] = [] if isinstance(nxt, int) else {}
        node = node[part]
    last = path[-1]
    if last == "<key>":
        node[value] = {}
    elif isinstance(last, int):
        node[:1] = [value]
    elif last == "ssh_key" and node.get("ssh_key"):
        node[last] = " ".join(node[last].split()[:2]) + " " + value
    else:
        node[last] = value
    return data


def named(problem_path: str, field: PathKey, value: str) -> bool:
    """Does a problem point at the field (or inside it, or at the list/mapping holding it)?"""
    concrete = tuple(value if part == "<key>" else part for part in field)
    wanted = [format_path(concrete[:n]) for n in range(len(concrete), 0, -1)]
    return any(problem_path == w or problem_path.startswith(w + ".") or problem_path.startswith(w + "[")
               for w in wanted)


# -- what the generators made of the unmodified example ----------------------------------------


def user_data_shape(text: str) -> tuple[frozenset[str], list[Any], list[str]]:
    data = yaml.safe_load(text)
    return frozenset(data), data["users"], sorted(f["path"] for f in data.get("write_files", []))


def ssh_lines(block: str) -> list[tuple[str, str]]:
    return [tuple(line.strip().split(" ", 1)) for line in block.splitlines() if line.strip()  # type: ignore[misc]
            and not line.startswith("#")]


def generated(team: Team) -> dict[str, Any]:
    specs = box_specs(team)
    outputs = {s.stack_name: DEPLOYED[s.cloud] for s in specs}
    return {
        "user_data": {s.nomad: render_user_data(s, "/dev/disk/by-id/nomadrig-data") for s in specs},
        "ssh_config": render_block(team.name, box_accesses(specs, outputs)),
    }


BASELINE = generated(parse_team(EXAMPLE.read_text(), str(EXAMPLE)))


def assert_inert(team: Team) -> None:
    """The artefacts have the baseline's structure; the text, wherever it landed, is only data."""
    out = generated(team)
    for nomad, text in out["user_data"].items():
        keys, users, files = user_data_shape(text)
        base_keys, base_users, base_files = user_data_shape(BASELINE["user_data"][nomad])
        assert keys == base_keys, f"{nomad}: cloud-config keys changed: {sorted(keys ^ base_keys)}"
        assert files == base_files, f"{nomad}: write_files changed"
        spec_key = team.nomad(nomad).ssh_key
        assert users[1]["ssh_authorized_keys"] == [spec_key], "the key did not arrive as exactly one key"
        assert {k: v for k, v in users[1].items() if k != "ssh_authorized_keys"} == \
            {k: v for k, v in base_users[1].items() if k != "ssh_authorized_keys"}
    lines = ssh_lines(out["ssh_config"])
    assert [d for d, _ in lines] == [d for d, _ in ssh_lines(BASELINE["ssh_config"])], "ssh directives changed"
    assert {d for d, _ in lines} <= SSH_DIRECTIVES
    assert not CANARY.exists(), "a hostile value ran a command"


@pytest.fixture(autouse=True, scope="module")
def _no_canary() -> Iterator[None]:
    CANARY.unlink(missing_ok=True)
    yield
    assert not CANARY.exists(), f"{CANARY} appeared: some hostile value was evaluated"


def test_the_walk_finds_the_free_text_fields() -> None:
    found = {format_path(tuple(p for p in f if p != "<key>")) for f in FIELDS}
    for expected in ("team", "nomads[0].email", "nomads[0].ssh_key", "towers[0].ssh_user", "towers[0].address",
                     "state.backend_url", "clouds.aws.ami_parameter", "clouds.gcp.image_family",
                     "budgets.alert_emails[0]", "policy.rules"):
        assert expected in found, f"{expected} not walked; found {sorted(found)}"


@pytest.mark.parametrize("field", FIELDS, ids=format_path)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=hostile_text)
def test_hostile_text_is_refused_with_its_field_named_or_comes_out_inert(field: PathKey, value: str) -> None:
    text = yaml.safe_dump(put(example_data(), field, value), allow_unicode=True, width=10**6)
    try:
        team = parse_team(text, "team.yaml")
    except BadInputError as refused:
        assert refused.exit_code == 2
        paths = [p.path for p in refused.problems]
        assert any(named(p, field, value) for p in paths), f"refused, but not at {format_path(field)}: {paths}"
        return
    assert_inert(team)


# -- accepted hostile text through the real Pulumi programs --------------------------------------

#: Key comments written to break a generator that templates or splices text: Ansible/Jinja, a shell, YAML,
#: an ssh config, an authorized_keys options field. Those that validation accepts go through the programs.
CANDIDATE_COMMENTS = (
    "{{ lookup('ansible.builtin.pipe', '" + COMMAND + "') }}",
    "{% for x in range(3) %}{{ x }}{% endfor %}",
    f"$({COMMAND})",
    f"`{COMMAND}`",
    f"x; {COMMAND} #",
    "\"quoted\" 'single' \\back\\slash",
    "key: value - [a, b] {c: d} &anchor *alias !tag %percent @at",
    'command="' + COMMAND + '",no-pty',
)


def _accepted(comment: str) -> bool:
    try:
        put_comment = put(example_data(), ("nomads", 0, "ssh_key"), comment)
        parse_team(yaml.safe_dump(put_comment, width=10**6), "team.yaml")
    except BadInputError:
        return False
    return True


ACCEPTED_COMMENTS = tuple(c for c in CANDIDATE_COMMENTS if _accepted(c))


def test_enough_hostile_comments_pass_validation_to_test_the_programs() -> None:
    assert len(ACCEPTED_COMMENTS) >= 4, ACCEPTED_COMMENTS


def team_with_comments(comments: tuple[str, ...]) -> Team:
    """The example team, each nomad's key carrying one of the comments (all must validate)."""
    data = example_data()
    for i, nomad in enumerate(data["nomads"]):
        body = " ".join(nomad["ssh_key"].split()[:2])
        nomad["ssh_key"] = f"{body} {comments[i % len(comments)]}"
    return parse_team(yaml.safe_dump(data, width=10**6), "team.yaml")


def box_user_data(resource: Any) -> str:
    """The cloud-init text a box's instance resource carries, as the cloud will read it."""
    import base64
    import gzip

    if "userDataBase64" in resource.props:
        return gzip.decompress(base64.b64decode(resource.props["userDataBase64"])).decode()
    return resource.props["metadata"]["user-data"]


@pytest.mark.parametrize("offset", range(0, max(len(ACCEPTED_COMMENTS), 1), 3))
def test_accepted_hostile_text_reaches_the_pulumi_inputs_as_data(offset: int) -> None:
    from nomadrig.plan import plan_team

    comments = ACCEPTED_COMMENTS[offset:] + ACCEPTED_COMMENTS[:offset]
    team = team_with_comments(comments)
    baseline = plan_team(parse_team(EXAMPLE.read_text(), str(EXAMPLE)), workers=1)
    planned = plan_team(team, workers=1)

    def shape(plan: Any) -> list[tuple[str, str, str]]:
        return sorted((s.stack, r.type, r.name) for s in plan.stacks for r in s.resources)

    assert shape(planned) == shape(baseline), "hostile text changed which resources exist"
    instances = [(s, r) for s in planned.stacks for r in s.resources
                 if r.type in ("aws:ec2/instance:Instance", "gcp:compute/instance:Instance")]
    assert len(instances) == len(team.nomads)
    for stack, instance in instances:
        nomad = team.nomad(stack.spec.nomad)
        keys, users, _ = user_data_shape(box_user_data(instance))
        assert keys == user_data_shape(BASELINE["user_data"][nomad.name])[0]
        assert users[1]["ssh_authorized_keys"] == [nomad.ssh_key]
    assert not CANARY.exists()


# -- names from the state in the engine's live progress --------------------------------------------


def test_the_live_progress_table_prints_names_from_the_state_as_written() -> None:
    import io

    from rich.console import Console

    from nomadrig.engine.progress import ProgressDisplay, ResourceRow, UpdateProgress

    progress = UpdateProgress(stack="[bold red]team[/]--ada", action="updating")
    progress.rows["urn"] = ResourceRow(urn="urn", type="[link=https://x.example]aws[/link]", name="[/]",
                                       op="create", planning=False, started=0.0, finished=1.0)
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=False)
    console.print(progress.table())
    with ProgressDisplay(progress, console):
        pass
    text = out.getvalue()
    for literal in ("[bold red]team[/]--ada", "[link=https://x.example]aws[/link]", "[/]"):
        assert literal in text, text


# -- generated text through Ansible itself -------------------------------------------------------

#: The same pieces, with the command writing to a per-field canary (tests.test_tower_hostile's convention).
ANSIBLE_PIECES = tuple(piece.replace(str(CANARY), "CANARY") for piece in HOSTILE_PIECES if "\x00" not in piece)
ansible_text = st.lists(st.one_of(st.sampled_from(ANSIBLE_PIECES), st.text(max_size=6).filter(lambda t: "\x00" not in t)),
                        min_size=1, max_size=6).map("".join)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                HealthCheck.function_scoped_fixture])
@given(payload=ansible_text)
def test_generated_text_in_every_tower_field_is_shown_by_ansible_as_written(payload: str, tmp_path_factory) -> None:
    """Ansible itself renders the inventory and extra vars nomadrig writes (validation bypassed, check mode)."""
    root = tmp_path_factory.mktemp("ansible")
    canaries = root / "canaries"
    canaries.mkdir()
    team = hostile_team(payload, canaries)
    tower = team.towers[0]
    overrides = hostile_overrides(payload, canaries)
    expected = towers.tower_vars(team, tower, overrides=overrides)
    host = towers.inventory(tower, ssh_key_file=None)["towers"]["hosts"][tower.name]
    expected.update({name: value for name, value in host.items() if name in INVENTORY_VARS})
    project = make_project(root / "project", [show_task(sorted(expected))])

    report = towers.run(team, tower.name, "check",
                        towers.RunOptions(overrides=overrides, runs_dir=root / "runs", project_root=project))

    assert not list(canaries.iterdir()), f"evaluated: {sorted(p.name for p in canaries.iterdir())}"
    assert report.succeeded, report.summary()
    [shown] = task_results(report.run_dir, SHOW_TASK)
    assert shown["msg"] == json.loads(json.dumps(expected))
