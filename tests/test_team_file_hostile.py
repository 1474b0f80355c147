"""A hostile team file is refused quickly, cheaply and precisely: exit 2, the line and the field named, never a crash.

A team file arrives through pull requests. Whatever it holds, `nomadrig validate`
must answer within its memory bound (YAML alias bombs, recursive aliases,
nesting 10,000 deep), read every number as a number within its field's range,
give each policy rule only the parameters it declares, and accept free text
only in the exact shape of what it names (an e-mail address, an SSH key line,
a Pulumi backend URL, an image), so nothing in it can become a second key, a
template or another host.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import signal
import struct
import subprocess
import sys
import tempfile
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import provisional as prov
from hypothesis import strategies as st
from pydantic import BaseModel

from nomadrig.errors import BadInputError
from nomadrig.policy import PolicyContext, TeamPlan, all_rules, check_team, get_rule
from nomadrig.policy.model import Rule, Severity
from nomadrig.policy.registry import ParamProblem, check_param, effective, spec_rule
from nomadrig.spec import box_specs
from nomadrig.sshkeys import SshKeyProblem, check_public_key
from nomadrig.team.load import parse_team
from nomadrig.team.model import Team, check_email
from nomadrig.yamlmap import MAX_ALIAS_EXPANSION, MAX_DEPTH, PathKey, format_path, load_located

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "team.yaml"
EXAMPLE_TEXT = EXAMPLE.read_text()
ADA_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJBUEUoeL5J7135PKiUP4idswBM6zCZz+9pHJna9zx5k"
MEMORY_BOUND_MB = 100


def example() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE_TEXT)


def refusal(text: str) -> BadInputError:
    """The BadInputError parse_team raises for text (fails the test if the text is accepted)."""
    with pytest.raises(BadInputError) as info:
        parse_team(text, "team.yaml")
    assert info.value.exit_code == 2
    return info.value


def problem_at(error: BadInputError, path: str) -> str:
    """The rendered problem at exactly that field path (fails the test, showing all problems, if none is)."""
    rendered = [p.render("team.yaml") for p in error.problems if p.path == path]
    assert rendered, f"no problem at {path}: {error.render()}"
    return rendered[0]


def as_json_yaml(data: dict[str, Any]) -> str:
    """The data as YAML that keeps every character exactly: JSON, with YAML's escapes for all but ASCII.

    A literal U+2028 or U+0085 inside a YAML string is a line break YAML folds
    away; escaped, it reaches the validator as written.
    """
    return re.sub(r"[^\x00-\x7e]", lambda m: f"\\U{ord(m.group()):08x}", json.dumps(data, ensure_ascii=False))


def with_value(path: PathKey, value: Any, data: dict[str, Any] | None = None) -> dict[str, Any]:
    data = copy.deepcopy(data or example())
    node: Any = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return data


# ---------------------------------------------------------------- YAML that explodes


#: Runs argv[2:], then writes its peak RSS (KiB), wall and CPU seconds to argv[1]. Linux counts in a child's
#: ru_maxrss the memory of the process it was forked from (pytest here, easily 100 MB): forked from this small
#: launcher instead, the figure is the command's own.
PEAK_LAUNCHER = ("import os, subprocess, sys, time; start = time.perf_counter(); "
                 "child = subprocess.Popen(sys.argv[2:]); _, status, usage = os.wait4(child.pid, 0); "
                 "child.returncode = os.waitstatus_to_exitcode(status); "
                 "open(sys.argv[1], 'w').write(f'{usage.ru_maxrss} {time.perf_counter() - start} "
                 "{usage.ru_utime + usage.ru_stime}'); "
                 "sys.exit(child.returncode)")


class CliRun(typing.NamedTuple):
    code: int
    output: str  # stdout and stderr, whitespace joined (a terminal's wrapping undone)
    peak_mb: float
    wall_s: float
    cpu_s: float  # user + system: what the run costs, whatever else the machine runs


def run_measured(command: list[str], timeout: float = 60) -> CliRun:
    """Run command in a new process (through PEAK_LAUNCHER) and return what it did and cost.

    The timeout only guards against a hang; how long validation takes is
    recorded in benchmarks/results/validate_scale.txt, not asserted here.
    """
    env = {**os.environ, "COLUMNS": "400"}
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report"
        process = subprocess.Popen([sys.executable, "-c", PEAK_LAUNCHER, str(report), *command],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
                                   start_new_session=True)
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
        peak_kib, wall, cpu = report.read_text().split() if report.exists() else ("inf",) * 3
    return CliRun(process.returncode, " ".join(output.decode(errors="replace").split()), float(peak_kib) / 1024,
                  float(wall), float(cpu))


def run_validate(path: Path, timeout: float = 60) -> CliRun:
    """`nomadrig validate --team path` in a new process, with its own peak memory and times."""
    return run_measured([sys.executable, "-m", "nomadrig.cli", "validate", "--team", str(path)], timeout)


def billion_laughs(levels: int = 9) -> str:
    """The classic: each level an anchored list of nine aliases of the level below; 9**9 values in ~600 bytes."""
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels):
        name, below = chr(ord("a") + level), chr(ord("a") + level - 1)
        lines.append(f"{name}: &{name} [{', '.join([f'*{below}'] * 9)}]")
    return "\n".join(lines) + "\n"


def merge_bomb(levels: int = 40) -> str:
    """Merge keys of merge keys: each level merges the one below twice."""
    lines = ["m0: &m0 {k0: 0}"]
    lines += [f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}], k{i}: {i}}}" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def alias_tower(levels: int = 40, nesting: int = 60) -> str:
    """Each anchor nests the one below 60 levels deeper: no single line is deep, the expansion is."""
    lines = [f"t0: &t0 {'[' * nesting}1{']' * nesting}"]
    lines += [f"t{i}: &t{i} {'[' * nesting}*t{i - 1}{']' * nesting}" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


EXPLOSIVE = {
    # id: (text, the line the message must name, words it must hold)
    "billion-laughs": (billion_laughs(), None, ["alias", f"{MAX_ALIAS_EXPANSION:,}"]),
    "self-alias": ("team: &x [*x]\n", 1, ["recursive alias"]),
    "self-alias-in-mapping": ("team: vision-lab\nbudgets: &b {monthly_usd: *b}\n", 2, ["recursive alias"]),
    "lists-10000-deep": ("team: " + "[" * 10_000 + "]" * 10_000 + "\n", 1, [f"more than {MAX_DEPTH} levels"]),
    "mappings-10000-deep": ("team: " + "{a: " * 10_000 + "1" + "}" * 10_000 + "\n", 1,
                            [f"more than {MAX_DEPTH} levels"]),
    "block-lists-10000-deep": ("team:\n  " + "- " * 10_000 + "x\n", 2, [f"more than {MAX_DEPTH} levels"]),
    "merge-bomb": (merge_bomb(), None, ["alias", f"{MAX_ALIAS_EXPANSION:,}"]),
    "depth-through-aliases": (alias_tower(), 2, [f"more than {MAX_DEPTH} levels"]),
    "5000-digit-integer": ("team: vision-lab\nbudgets:\n  monthly_usd: " + "9" * 5000 + "\n", 3,
                           ["budgets.monthly_usd", "5,000 digits"]),
}


@pytest.mark.parametrize("case", sorted(EXPLOSIVE))
def test_explosive_yaml_exits_2_naming_the_line_within_the_memory_bound(case: str, tmp_path: Path) -> None:
    text, line, words = EXPLOSIVE[case]
    path = tmp_path / "team.yaml"
    path.write_text(text)
    code, output, peak_mb, _, _ = run_validate(path)
    assert code == 2, output
    assert "Traceback" not in output and "internal error" not in output, output
    found = re.search(re.escape(str(path)) + r":(\d+): ", output)
    assert found, f"no line named: {output}"
    if line is not None:
        assert int(found.group(1)) == line, output
    else:  # the line holding the alias that broke the budget
        assert "*" in text.splitlines()[int(found.group(1)) - 1], output
    for word in words:
        assert word in output, output
    assert peak_mb < MEMORY_BOUND_MB, f"{case}: peak {peak_mb:.0f} MB"


def test_the_billion_laughs_here_is_the_small_one_of_the_issue() -> None:
    assert len(billion_laughs().encode()) < 700
    assert len(b"team: &x [*x]") == 13


def test_an_alias_of_a_huge_structure_used_as_a_key_is_refused_without_expanding_it() -> None:
    text = billion_laughs(levels=5) + "? *e\n: 1\n"  # *e stands for 9**5 values, under the budget only as a key
    doc = load_located(text, "team.yaml")
    [problem] = doc.problems
    assert "a key must be plain text" in problem.message and problem.line == 6


def test_aliases_within_the_budget_still_work_like_yaml() -> None:
    text = "d: &d {a: 1, b: 2}\nx:\n  <<: *d\n  b: 3\ny: [*d, *d]\n"
    doc = load_located(text, "team.yaml")
    assert doc.problems == []
    assert doc.data == yaml.safe_load(text)
    assert doc.lines[("x", "b")] == 4 and doc.lines[("x", "a")] == 3  # a merged key points at its '<<' line


def test_a_second_document_and_foreign_tags_are_refused_where_they_stand() -> None:
    two = load_located("team: a\n---\nteam: b\n", "team.yaml")
    assert two.data is None and two.problems[0].line == 2 and "more than one" in two.problems[0].message
    tagged = load_located("team: vision-lab\nbudgets: !!python/object:os.system {}\nx: !!python/name:os.system x\n",
                          "team.yaml")
    assert [(p.path, p.line) for p in tagged.problems] == [("x", 3)]
    assert "cannot be used here" in tagged.problems[0].message


def test_an_impossible_date_is_a_located_problem_not_a_crash() -> None:
    error = refusal(EXAMPLE_TEXT.replace("team: vision-lab", "team: 2024-13-45", 1))
    assert "month must be in 1..12" in problem_at(error, "team")


# ---------------------------------------------------------------- numbers


def _numeric(annotation: Any) -> bool:
    return annotation in (int, float) or (
        bool(typing.get_args(annotation)) and all(a in (int, float, type(None)) for a in typing.get_args(annotation)))


def numeric_fields(model: type[BaseModel] = Team, prefix: PathKey = ()) -> Iterator[tuple[PathKey, Any]]:
    """Every int/float field of the team model, with its path (lists entered at 0, rule overrides skipped)."""
    for name, info in model.model_fields.items():
        path = (*prefix, name)
        if _numeric(info.annotation):
            yield path, info
            continue
        origin = typing.get_origin(info.annotation)
        for arg in (info.annotation, *typing.get_args(info.annotation)):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                yield from numeric_fields(arg, (*path, 0) if origin is list else path)


NUMERIC = {format_path(path): (path, info) for path, info in numeric_fields()}
HOSTILE_NUMBERS = {
    "5000-digits": "9" * 5000, "inf": ".inf", "minus-inf": "-.inf", "nan": ".nan", "1e308": "1.0e+308",
    "minus-1e308": "-1.0e+308", "true": "true", "false": "false", "quoted": '"100"', "text": "lots",
}


def test_every_numeric_field_is_found_and_has_a_finite_range() -> None:
    assert {"budgets.monthly_usd", "policy.tower_min_free_disk_gb", "policy.spot_required_above_usd",
            "nomads[0].data_disk_gb", "towers[0].psu_watts", "towers[0].gpus[0].count"} <= set(NUMERIC)
    for name, (_, info) in NUMERIC.items():
        bounds = {type(m).__name__ for m in info.metadata}
        assert bounds & {"Ge", "Gt"} and bounds & {"Le", "Lt"}, f"{name} has no range: {info.metadata}"


def put_raw(path: PathKey, raw: str) -> tuple[str, int]:
    """The example with the YAML text raw at path, and its line (a placeholder is dumped, then replaced)."""
    data = with_value(path, "__RAW__", example())
    text = yaml.safe_dump(data, sort_keys=False)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "__RAW__" in row)
    return text.replace("__RAW__", raw), line


@pytest.mark.parametrize("field", sorted(NUMERIC))
@pytest.mark.parametrize("number", sorted(HOSTILE_NUMBERS))
def test_a_hostile_number_in_any_numeric_field_exits_2_naming_it(field: str, number: str) -> None:
    text, line = put_raw(NUMERIC[field][0], HOSTILE_NUMBERS[number])
    message = problem_at(refusal(text), field)
    assert message.startswith(f"team.yaml:{line}: {field}: "), message
    assert len(message) < 400, "the value is shown cut short"


def test_a_float_where_a_whole_number_belongs_is_refused_but_a_whole_float_is_read() -> None:
    text, _ = put_raw(("nomads", 0, "ttl_hours"), "5.5")
    assert "not a whole number" in problem_at(refusal(text), "nomads[0].ttl_hours")
    team = parse_team(put_raw(("nomads", 0, "ttl_hours"), "48.0")[0], "team.yaml")
    assert team.nomads[0].ttl_hours == 48 and isinstance(team.nomads[0].ttl_hours, int)


# ---------------------------------------------------------------- rule parameters


def rule_override(rule_id: str, params: dict[str, Any]) -> str:
    data = example()
    data["policy"]["rules"] = {rule_id: {"params": params}}
    return as_json_yaml(data)


def test_an_unknown_parameter_is_refused_naming_it_and_listing_the_rules_parameters() -> None:
    message = problem_at(refusal(rule_override("COST-001", {"xyz": 1})), "policy.rules.COST-001.params.xyz")
    assert "COST-001 takes no parameters" in message
    message = problem_at(refusal(rule_override("COST-004", {"warn_at": 90})), "policy.rules.COST-004.params.warn_at")
    assert "warn_at_pct (a whole number, 1-100, default 80)" in message


WRONG_FOR = {
    bool: [1, 0, "true", 1.5, None, [True], {"a": 1}],
    int: [True, False, 80.0, 80.5, "80", float("inf"), float("nan"), None, [80], {"a": 1}, 10**400],
    float: [True, "0.5", float("inf"), float("-inf"), float("nan"), None, [0.5]],
    str: [True, 1, 1.5, None, ["a"], {"a": "b"}, "a\nb", "x" * 5000, "\u2028"],
}


def declared_params() -> list[tuple[str, str]]:
    return [(rule.id, name) for rule in all_rules() for name in rule.params]


@pytest.mark.parametrize("rule_id,name", declared_params())
def test_every_declared_parameter_refuses_values_of_another_type(rule_id: str, name: str) -> None:
    rule = get_rule(rule_id)
    for value in WRONG_FOR[type(rule.params[name])]:
        with pytest.raises(ParamProblem):
            check_param(rule, name, value)
    assert check_param(rule, name, rule.params[name]) == rule.params[name]


@pytest.mark.parametrize("value", [True, 0, 101, 80.0, float("inf"), "80", [80], None])
def test_a_wrong_parameter_in_the_team_file_exits_2_naming_it(value: Any) -> None:
    message = problem_at(refusal(rule_override("COST-004", {"warn_at_pct": value})),
                         "policy.rules.COST-004.params.warn_at_pct")
    assert "COST-004 takes: warn_at_pct" in message


def synthetic_rule(params: dict[str, Any], ranges: dict[str, tuple[float, float]]) -> Rule:
    return Rule("TEST-001", "test", Severity.ADVISORY, "team", lambda subject, ctx: (), params=params,
                param_ranges=ranges)


def test_a_whole_number_is_accepted_where_a_float_is_declared_and_arrives_as_a_float() -> None:
    rule = synthetic_rule({"ratio": 0.5}, {"ratio": (0, 2)})
    value = check_param(rule, "ratio", 1)
    assert value == 1.0 and isinstance(value, float)
    for bad in (True, 3, -1, float("nan")):
        with pytest.raises(ParamProblem):
            check_param(rule, "ratio", bad)


def test_the_rule_function_receives_the_declared_type_and_never_a_wrong_one() -> None:
    team = parse_team(rule_override("COST-004", {"warn_at_pct": 90}), "team.yaml")
    _, _, ctx = effective(get_rule("COST-004"), PolicyContext.from_team(team))
    assert ctx.params == {"warn_at_pct": 90}
    forged = team.policy.model_copy(update={"rules": {"COST-004": team.policy.rules["COST-004"].model_copy(
        update={"params": {"warn_at_pct": "ninety"}})}})
    with pytest.raises(ValueError, match="warn_at_pct"):
        effective(get_rule("COST-004"), PolicyContext(policy=forged))


def test_a_numeric_parameter_must_be_declared_with_a_range_holding_its_default() -> None:
    for params, ranges in (({"n": 5}, {}), ({"n": 5}, {"n": (6, 9)}), ({"x": [1]}, {})):
        with pytest.raises(ValueError):
            spec_rule(id="TEST-999", title="t", severity=Severity.ADVISORY, params=params, ranges=ranges)(
                lambda subject, ctx: ())
    assert all(r.id != "TEST-999" for r in all_rules())


# ---------------------------------------------------------------- e-mail addresses

LOCAL_ATOM = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#%&*+/=?^_|~-", min_size=1,
                     max_size=12)
addresses = st.builds(lambda atoms, domain: ".".join(atoms) + "@" + domain,
                      st.lists(LOCAL_ATOM, min_size=1, max_size=4), prov.domains(max_length=60)).filter(
    lambda a: len(a.partition("@")[0]) <= 64)
UNSAFE_IN_ADDRESS = st.one_of(
    st.sampled_from(list("\"'`${}[]()<>\\ ,;:\t\r\n\x0b\x0c\x00\x85\u2028\u2029") + ["{{", "{%", "$(", "é"]),
    st.characters(blacklist_categories=("Cs",), min_codepoint=0x80),
    st.characters(max_codepoint=0x1F),
)


@given(address=addresses)
@settings(max_examples=150, deadline=None)
def test_generated_valid_addresses_are_accepted(address: str) -> None:
    assert check_email(address) == address


@given(address=addresses, unsafe=UNSAFE_IN_ADDRESS, where=st.integers(min_value=0))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_an_address_with_an_unsafe_character_is_refused_in_both_fields(address: str, unsafe: str, where: int) -> None:
    where %= len(address) + 1
    hostile = address[:where] + unsafe + address[where:]
    for path, shown_path in ((("nomads", 0, "email"), "nomads[0].email"),
                             (("budgets", "alert_emails"), "budgets.alert_emails")):
        value: Any = [hostile] if shown_path.startswith("budgets") else hostile
        data = with_value(path, value)
        try:
            parse_team(as_json_yaml(data), "team.yaml")
        except BadInputError as error:
            assert any(p.path == shown_path for p in error.problems), error.render()
            continue
        stored = hostile.strip()  # leading/trailing whitespace is stripped, as from every field
        assert stored != hostile and check_email(stored) == stored, f"{hostile!r} was accepted"


@pytest.mark.parametrize("address", [
    "ada", "@vision-lab.example", "ada@", "ada@localhost", "ada@[192.0.2.1]", '"ada"@vision-lab.example',
    "ada..b@vision-lab.example", ".ada@vision-lab.example", "ada.@vision-lab.example", "ada@vision_lab.example",
    "ada@-vision.example", "ada@vision.123", "a" * 65 + "@vision-lab.example", "ada@" + "a" * 250 + ".example",
    "ada@vision-lab.example@evil.example", "{{ada}}@vision-lab.example", "a$(id)@vision-lab.example",
])
def test_addresses_outside_the_dot_atom_shape_are_refused(address: str) -> None:
    message = problem_at(refusal(as_json_yaml(with_value(("nomads", 0, "email"), address))), "nomads[0].email")
    assert "not an e-mail address" in message and "ada@vision-lab.example" in message


# ---------------------------------------------------------------- SSH key comments

ed25519_keys = st.binary(min_size=32, max_size=32).map(
    lambda raw: "ssh-ed25519 " + base64.b64encode(
        struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 32) + raw).decode())
safe_comments = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60).filter(
    lambda c: not any(m in c for m in ("{{", "{%", "{#")))


@given(key=ed25519_keys, comment=safe_comments)
@settings(max_examples=150, deadline=None)
def test_generated_keys_with_printable_ascii_comments_are_accepted(key: str, comment: str) -> None:
    assert check_public_key(f"{key} {comment}") == "ssh-ed25519"


BREAKS = ["\r", "\n", "\x0b", "\x0c", "\x85", "\u2028", "\u2029", "\x00", "\x1c", "\x1d", "\x1e", "\t", "\x1b"]


@given(key=ed25519_keys, before=safe_comments, bad=st.one_of(st.sampled_from(BREAKS),
                                                              st.characters(blacklist_categories=("Cs",),
                                                                            min_codepoint=0x7F),
                                                              st.characters(max_codepoint=0x1F)),
       after=safe_comments)
@settings(max_examples=150, deadline=None)
def test_a_comment_with_any_character_outside_printable_ascii_is_refused(key: str, before: str, bad: str,
                                                                           after: str) -> None:
    line = f"{key} {before}{bad}{after}x"
    with pytest.raises(SshKeyProblem) as info:
        check_public_key(line)
    assert "printable ASCII" in info.value.message + info.value.fix or "lines" in info.value.message


@pytest.mark.parametrize("bad", BREAKS + ["{{ lookup('pipe', 'id') }}", "{% raw %}", "{# x #}"])
def test_a_hostile_comment_in_the_team_file_exits_2_naming_the_key(bad: str) -> None:
    key = f"{ADA_KEY} ada{bad}ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBad comment"
    message = problem_at(refusal(as_json_yaml(with_value(("nomads", 0, "ssh_key"), key))), "nomads[0].ssh_key")
    assert "ada@laptop" in message or "one line" in message, message  # the fix says what to paste


# ---------------------------------------------------------------- the state backend URL

ACCEPTED_BACKENDS = [
    "file://~/.nomadrig/state", "file:///var/lib/nomadrig/state", "file://./state", "s3://vision-lab-state",
    "s3://vision-lab-state/nomadrig", "s3://vision.lab.state/a/b/", "s3://vision-lab-state?region=eu-west-1",
    "s3://vision-lab-state/p?region=us-east-1&profile=vision-lab&awssdk=v2", "gs://vision-lab-state",
    "gs://vision_lab_state/prefix", "azblob://vision-lab-state", "azblob://state/prefix", "https://api.pulumi.com",
    "https://api.pulumi.com/", "https://app.pulumi.com",
]
REFUSED_BACKENDS = {
    "ftp://x": "not a Pulumi backend URL",
    "https://evil.example": "not Pulumi Cloud",
    "https://api.pulumi.com.evil.example": "not Pulumi Cloud",
    "https://api.pulumi.com/../evil": "not Pulumi Cloud",
    "https://user:token@api.pulumi.com": "credentials",
    "s3://AKIA:secret@vision-lab-state": "credentials",
    "s3://vision-lab-state\nHost *": "line feed",
    "file://~/state\rx": "carriage return",
    "file://~/my state": "space",
    "s3://vision-lab-state/\u2028x": "line separator",
    "file://~/$(id)": "not a plain local path",
    "file://": "not a plain local path",
    "s3://Vision-Lab": "not an S3 bucket name",
    "s3://ab": "not an S3 bucket name",
    "s3://192.168.1.1": "not an S3 bucket name",
    "s3://vision..lab": "not an S3 bucket name",
    "s3://xn--vision": "not an S3 bucket name",
    "s3://vision-lab-s3alias": "not an S3 bucket name",
    "s3://vision-lab-state?endpoint=evil.example": "endpoint",
    "s3://vision-lab-state?region=moon-1": "not a valid region",
    "s3://vision-lab-state?region=eu-west-1&region=us-east-1": "repeated",
    "s3://vision-lab-state/../x": "not a plain prefix",
    "s3://vision-lab-state//x": "not a plain prefix",
    "s3://vision-lab-state#x": "not an S3 bucket name",
    "gs://google-state": "not a Cloud Storage bucket name",
    "gs://goog-state": "not a Cloud Storage bucket name",
    "gs://state?x=1": "query option",
    "azblob://Vision": "not an Azure container name",
    "azblob://vision--lab": "not an Azure container name",
    "s3://{{lookup('pipe','id')}}": "not an S3 bucket name",
}


@pytest.mark.parametrize("url", ACCEPTED_BACKENDS)
def test_backend_urls_in_their_services_shapes_are_accepted(url: str) -> None:
    assert parse_team(as_json_yaml(with_value(("state", "backend_url"), url)), "team.yaml").state.backend_url == url


@pytest.mark.parametrize("url", sorted(REFUSED_BACKENDS))
def test_other_backend_urls_are_refused_with_the_reason_and_the_fix(url: str) -> None:
    message = problem_at(refusal(as_json_yaml(with_value(("state", "backend_url"), url))), "state.backend_url")
    what, _, fix = message.partition("\n  ")
    assert REFUSED_BACKENDS[url] in what, message
    assert fix, f"no fix: {message}"


# ---------------------------------------------------------------- image overrides and their publisher (SPEC-004)

ACCEPTED_AMI = ["", "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id",
                "/vision-lab/box-ami", "box-ami", "arn:aws:ssm:eu-west-1:123456789012:parameter/vision-lab/box-ami",
                "arn:aws-us-gov:ssm:us-gov-west-1:123456789012:parameter/x"]
REFUSED_AMI = ["ami-0123456789abcdef0", "ami-12345678", "/a//b", "/a/b/", "/a b", "/a\n/b", "{{ x }}", "/a/$(id)",
               "arn:aws:ssm:eu-west-1:1234:parameter/x", "arn:aws:s3:::bucket/x",
               "arn:aws:ssm:eu-west-1:123456789012:parameter", "/" + "/".join(["a"] * 16), "/" + "a" * 2048]
ACCEPTED_FAMILY = ["", "common-cu128-ubuntu-2204-nvidia-570", "debian-12",
                   "projects/deeplearning-platform-release/global/images/family/common-cu128-ubuntu-2204-nvidia-570"]
REFUSED_FAMILY = ["Common-CU128", "1abc", "abc-", "a" * 64, "deeplearning-platform-release/common-cu128",
                  "projects/x/global/images/family/y", "projects/evil-project/global/images/y",
                  "https://www.googleapis.com/compute/v1/projects/evil-project/global/images/family/y",
                  "projects/evil-project/global/images/family/y\nx", "global/images/family/y"]


@pytest.mark.parametrize("value", ACCEPTED_AMI)
def test_ssm_parameter_names_and_arns_are_accepted(value: str) -> None:
    parse_team(as_json_yaml(with_value(("clouds", "aws", "ami_parameter"), value)), "team.yaml")


@pytest.mark.parametrize("value", REFUSED_AMI)
def test_other_ami_parameters_are_refused(value: str) -> None:
    message = problem_at(refusal(as_json_yaml(with_value(("clouds", "aws", "ami_parameter"), value))),
                         "clouds.aws.ami_parameter")
    assert "SSM parameter" in message


@pytest.mark.parametrize("value", ACCEPTED_FAMILY)
def test_image_families_and_their_paths_are_accepted(value: str) -> None:
    parse_team(as_json_yaml(with_value(("clouds", "gcp", "image_family"), value)), "team.yaml")


@pytest.mark.parametrize("value", REFUSED_FAMILY)
def test_other_image_families_are_refused(value: str) -> None:
    message = problem_at(refusal(as_json_yaml(with_value(("clouds", "gcp", "image_family"), value))),
                         "clouds.gcp.image_family")
    assert "not a GCE image family" in message


def image_verdicts(aws: str | None = None, gcp: str | None = None, account: str | None = None) -> list[str]:
    """SPEC-004's messages for the example with these overrides, through the path `plan` takes."""
    data = example()
    if aws is not None:
        data["clouds"]["aws"]["ami_parameter"] = aws
    if gcp is not None:
        data["clouds"]["gcp"]["image_family"] = gcp
    if account is not None:
        data["clouds"]["aws"]["account_id"] = account
    team = parse_team(as_json_yaml(data), "team.yaml")
    verdicts = check_team(TeamPlan(team.name, tuple(box_specs(team))), PolicyContext.from_team(team))
    return [v.message for v in verdicts if v.rule_id == "SPEC-004" and v.mandatory and v.fix]


@pytest.mark.parametrize("aws,account", [
    ("", None), ("/aws/service/deeplearning/ami/x86_64/latest/ami-id", None), ("/vision-lab/box-ami", None),
    ("arn:aws:ssm:eu-west-1:123456789012:parameter/vision-lab/box-ami", None),
])
def test_aws_images_of_the_team_or_aws_pass(aws: str, account: str | None) -> None:
    assert image_verdicts(aws=aws, account=account) == []


@pytest.mark.parametrize("aws,account,words", [
    ("arn:aws:ssm:eu-west-1:999999999999:parameter/box-ami", None, ["999999999999", "123456789012"]),
    ("arn:aws:ssm:eu-west-1:123456789012:parameter/box-ami", "", ["123456789012", "not set"]),
])
def test_aws_images_of_another_account_are_a_mandatory_violation(aws: str, account: str | None,
                                                                 words: list[str]) -> None:
    [message] = image_verdicts(aws=aws, account=account)
    assert all(word in message for word in words), message


@pytest.mark.parametrize("gcp", [
    "", "common-cu128-ubuntu-2204-nvidia-570", "projects/vision-lab-research/global/images/family/box",
    "projects/deeplearning-platform-release/global/images/family/common-cu128-ubuntu-2204-nvidia-570",
    "projects/ubuntu-os-accelerator-images/global/images/family/ubuntu-accelerator-2404-amd64-with-nvidia-570",
    "projects/cos-cloud/global/images/family/cos-stable",
])
def test_gcp_images_of_the_team_or_a_public_publisher_pass(gcp: str) -> None:
    assert image_verdicts(gcp=gcp) == []


def test_a_gcp_image_of_another_project_is_a_mandatory_violation() -> None:
    [message] = image_verdicts(gcp="projects/someone-else-123/global/images/family/box")
    assert "someone-else-123" in message and "vision-lab-research" in message


def test_the_cli_reports_a_foreign_image_as_a_policy_violation(tmp_path: Path) -> None:
    data = example()
    data["clouds"]["gcp"]["image_family"] = "projects/someone-else-123/global/images/family/box"
    path = tmp_path / "team.yaml"
    path.write_text(yaml.safe_dump(data))
    result = subprocess.run([sys.executable, "-m", "nomadrig.cli", "cost", "--team", str(path), "--json"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 1, result.stderr
    assert "SPEC-004" in {v["rule"] for v in json.loads(result.stdout)["verdicts"]}


# ---------------------------------------------------------------- the other free text, and the CLI's messages


@pytest.mark.parametrize("path,value,words", [
    (("policy", "required_tags"), ["nomadrig:owner\nHost *"], ["not a tag key"]),
    (("policy", "required_tags"), ["aws:createdBy"], ["not a tag key"]),
    (("nomads", 0, "timezone"), "../../etc/passwd", ["not a time zone"]),
    (("nomads", 0, "timezone"), "Europe/Ber\u2028lin", ["not a time zone"]),
    (("nomads", 0, "region"), "eu-west-1\n{{ x }}", ["not a AWS region"]),
    (("nomads", 0, "gpu_profile"), "a10g\r-24gb", ["not a aws GPU profile"]),
    (("policy", "allowed_instance_types"), ["g5.xlarge$(id)"], ["not in the catalog"]),
    (("team",), "vision-lab\n", None),  # stripped: accepted as vision-lab
])
def test_other_free_text_is_refused_unless_it_is_exactly_what_it_names(path: PathKey, value: Any,
                                                                        words: list[str] | None) -> None:
    text = as_json_yaml(with_value(path, value))
    if words is None:
        assert parse_team(text, "team.yaml").name == "vision-lab"
        return
    error = refusal(text)
    rendered = error.render()
    assert any(p.path.startswith(format_path(path)) for p in error.problems), rendered
    assert all(word in rendered for word in words), rendered


@pytest.mark.parametrize("old,new,field", [
    ("monthly_usd: 6000", "monthly_usd: .nan", "budgets.monthly_usd"),
    ("    data_disk_gb: 500", "    data_disk_gb: true", "nomads[0].data_disk_gb"),
    ("COST-004: {severity: mandatory}", "COST-004: {params: {warn_at_pct: .inf}}",
     "policy.rules.COST-004.params.warn_at_pct"),
    ("email: ada@vision-lab.example", 'email: "ada@vision-lab.example\\u2028x"', "nomads[0].email"),
    ("backend_url: file://~/.nomadrig/state", 'backend_url: "https://evil.example"', "state.backend_url"),
])
def test_the_cli_prints_file_line_field_and_fix_and_exits_2(tmp_path: Path, old: str, new: str, field: str) -> None:
    assert old in EXAMPLE_TEXT
    text = EXAMPLE_TEXT.replace(old, new, 1)
    path = tmp_path / "team.yaml"
    path.write_text(text)
    code, output, _, _, _ = run_validate(path)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if new.strip().splitlines()[0] in row)
    assert code == 2, output
    assert f"{path}:{line}: {field}: " in output, output
    assert "Traceback" not in output
