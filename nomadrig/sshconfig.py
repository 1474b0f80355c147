"""`nomadrig ssh-config`: one ssh Host per box, through SSM or IAP, in a managed block of ~/.ssh/config.

Boxes have no inbound port. ssh reaches them through the cloud's own tunnel:
AWS Systems Manager (``aws ssm start-session``, HostName = the instance id) and
GCP IAP TCP forwarding (``gcloud compute start-iap-tunnel``). Each Host also
forwards a distinct local port to the box's Jupyter (8888), so two boxes can
be open at once.

The block is delimited by ``# BEGIN nomadrig <team>`` / ``# END nomadrig <team>``;
everything outside it is the user's and is kept byte for byte. Writing is
idempotent (an unchanged block writes nothing), atomic (temp file + rename in
the same directory), and keeps a backup of the previous file.

Stack outputs come from Pulumi state that the whole team (and whoever can
write its bucket) shares, and they land in every teammate's ssh config, some
inside a ProxyCommand that a shell runs. So each value is checked against the
shape the cloud really gives it before anything is rendered, and one bad value
refuses the whole block (exit 3, the file untouched). Values are also quoted
for the shell and for ssh's ``%`` tokens, and the rendered block is parsed
back to be sure it holds exactly the directives meant, nothing more.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nomadrig.errors import BadInputError, CloudError, InputProblem

if TYPE_CHECKING:
    from nomadrig.spec import BoxSpec

JUPYTER_PORT = 8888
BACKUP_SUFFIX = ".nomadrig.bak"
SHOWN_VALUE_CHARS = 60

# The shapes the clouds really give each value (anchored with fullmatch; ASCII classes only).
SHAPES: dict[str, tuple[re.Pattern[str], str]] = {
    "aws_instance_id": (re.compile(r"i-(?:[0-9a-f]{8}|[0-9a-f]{17})"),
                        "an EC2 instance id: i- then 8 or 17 lowercase hex digits, e.g. i-0123456789abcdef0"),
    "aws_region": (re.compile(r"[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-[0-9]{1,2}"),
                   "an AWS region name, e.g. eu-west-1"),
    "gcp_instance_name": (re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?"),
                          "a GCE instance name: RFC 1035, 1-63 lowercase letters, digits or dashes, "
                          "starting with a letter, not ending with a dash"),
    "gcp_zone": (re.compile(r"[a-z]+(?:-[a-z]+)*[0-9]{1,2}-[a-z]"),
                 "a GCP zone: a region and a letter, e.g. us-central1-b"),
    "gcp_project": (re.compile(r"(?:[a-z][-a-z0-9]*(?:\.[a-z0-9][-a-z0-9]*)+:)?[a-z][-a-z0-9]{4,28}[a-z0-9]"),
                    "a GCP project id: 6-30 lowercase letters, digits or dashes, starting with a letter"),
    "login": (re.compile(r"[a-z_][a-z0-9_-]{0,31}"),
              "a login name: up to 32 lowercase letters, digits, _ or -, not starting with a digit or dash"),
    "alias": (re.compile(r"[a-z][a-z0-9-]{1,62}"), "a host alias made of the team and nomad names"),
}
# The ssh_config keywords a box's Host entry has, in order; parsing the block back must find exactly these.
HOST_DIRECTIVES = ("HostName", "User", "ProxyCommand", "LocalForward", "ServerAliveInterval")


def shown(value: object) -> str:
    """A value for an error message: repr (newlines and control characters escaped), cut to a readable length."""
    text = repr(value)
    return text if len(text) <= SHOWN_VALUE_CHARS else f"{text[:SHOWN_VALUE_CHARS]}... ({len(text)} characters)"


def fits(shape: str, value: object) -> bool:
    """Whether `value` is a string of the named shape (see SHAPES)."""
    return isinstance(value, str) and SHAPES[shape][0].fullmatch(value) is not None


def ssh_word(value: str) -> str:
    """`value` as one shell word inside a ProxyCommand: shell-quoted, then ``%`` doubled for ssh's tokens.

    ssh expands its ``%`` tokens first and hands the result to the shell, so
    the quoting is applied first and the ``%`` escape last. Checked values
    need neither; this is the second wall, not the first.
    """
    return shlex.quote(value).replace("%", "%%")


@dataclass(frozen=True)
class OutputProblem:
    """One value that does not have its cloud shape; `key` is the output (or team-file field) it came from."""

    stack: str
    key: str
    value: object
    shape: str
    from_outputs: bool = True

    def line(self) -> str:
        where = f"stack {self.stack}: output {self.key}" if self.from_outputs else f"stack {self.stack}: {self.key}"
        return f"{where} = {shown(self.value)} is not {SHAPES[self.shape][1]}"


class StackOutputError(CloudError):
    """Stack outputs without their cloud's shape: nothing was printed or written (exit 3)."""

    def __init__(self, problems: Sequence[OutputProblem]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  {p.line()}" for p in self.problems)
        super().__init__(
            "ssh-config refused: these stack outputs are not values the cloud gives, so ~/.ssh/config was not "
            f"changed:\n{lines}\n"
            "  Someone or something wrote them into the shared Pulumi state. Check them with "
            "`nomadrig outputs NOMAD`; `nomadrig up NOMAD` writes the real ones again."
        )


def begin_marker(team: str) -> str:
    return f"# BEGIN nomadrig {team}"


def end_marker(team: str) -> str:
    return f"# END nomadrig {team}"


@dataclass(frozen=True)
class BoxAccess:
    """How ssh reaches one box; `hostname` is None until the box was deployed."""

    alias: str
    nomad: str
    cloud: str
    region: str
    hostname: str | None
    local_port: int
    project: str = ""
    zone: str = ""
    user: str = ""  # login name when it is not the nomad's (GCP OS Login names come from the account)

    @property
    def login(self) -> str:
        return self.user or self.nomad

    @property
    def proxy_command(self) -> str:
        """The tunnel command; every value in it is a quoted shell word (see `ssh_word`)."""
        if self.cloud == "aws":
            return ("aws ssm start-session --target %h --document-name AWS-StartSSHSession "
                    f"--parameters 'portNumber=%p' --region {ssh_word(self.region)}")
        return (f"gcloud compute start-iap-tunnel {ssh_word(self.hostname or '')} %p --listen-on-stdin "
                f"--project={ssh_word(self.project)} --zone={ssh_word(self.zone)}")

    def directives(self) -> list[tuple[str, str]]:
        """The Host entry as (keyword, value) pairs, in order: what is rendered and what the parse-back expects."""
        return [
            ("Host", self.alias),
            ("HostName", self.hostname or ""),
            ("User", self.login),
            ("ProxyCommand", self.proxy_command),
            ("LocalForward", f"{self.local_port} localhost:{JUPYTER_PORT}"),
            ("ServerAliveInterval", "60"),
        ]

    @property
    def note(self) -> str:
        if self.hostname:
            return ""
        return (f"{self.alias}: no instance (not up yet, or down), so no Host entry; "
                f"run `nomadrig up {self.nomad}`, then `nomadrig ssh-config --write`.")

    def as_dict(self) -> dict[str, Any]:
        return {"host": self.alias, "nomad": self.nomad, "cloud": self.cloud, "region": self.region,
                "hostname": self.hostname, "user": self.login,
                "proxy_command": self.proxy_command if self.hostname else None,
                "local_forward": f"{self.local_port} localhost:{JUPYTER_PORT}", "ready": bool(self.hostname),
                "note": self.note}


def box_accesses(specs: Sequence[BoxSpec], outputs: Mapping[str, Mapping[str, Any] | None]) -> list[BoxAccess]:
    """One access per box, in team-file order; local Jupyter ports 8888, 8889, ... by that order.

    Ports follow the nomad's position, not only the deployed boxes, so a box's
    port does not change when a teammate's box comes or goes. User is the
    nomad, unless the box's outputs name an ``ssh_user`` (OS Login accounts).
    Raises StackOutputError (exit 3) naming every output without its cloud's
    shape, and BadInputError (exit 2) for a team-derived value that has none.
    """
    accesses: list[BoxAccess] = []
    problems: list[OutputProblem] = []
    for index, spec in enumerate(specs):
        out = outputs.get(spec.stack_name) or {}
        access, found = _access(spec, out, index)
        accesses.append(access)
        problems += found
    team_problems = [p for p in problems if not p.from_outputs]
    if team_problems:
        raise BadInputError("team file", [InputProblem(p.key, f"{shown(p.value)} is not {SHAPES[p.shape][1]}.",
                                                       "Fix the team file; `nomadrig validate` checks it.")
                                          for p in team_problems])
    if problems:
        raise StackOutputError(problems)
    return accesses


def _access(spec: BoxSpec, out: Mapping[str, Any], index: int) -> tuple[BoxAccess, list[OutputProblem]]:
    """The access of the `index`-th box from its outputs, and every value without its cloud's shape.

    An output that is absent (or empty) means "not deployed": a note, not an
    error. One that is present is checked, whatever its type. Team-file values
    are checked too (the config validates them; this is the second wall).
    """
    problems: list[OutputProblem] = []

    def output(key: str, shape: str) -> str | None:
        value = out.get(key)
        if value is None or value == "":
            return None
        if not fits(shape, value):
            problems.append(OutputProblem(spec.stack_name, key, value, shape))
            return None
        return str(value)

    def team_value(field: str, value: str, shape: str) -> None:
        if not fits(shape, value):
            problems.append(OutputProblem(spec.stack_name, field, value, shape, from_outputs=False))

    team_value(f"team, nomads[{index}].name (the host alias)", spec.stack_name, "alias")
    team_value(f"nomads[{index}].name", spec.nomad, "login")
    user = output("ssh_user", "login") or ""
    zone = project = ""
    if spec.cloud == "aws":
        team_value(f"nomads[{index}].region", spec.region, "aws_region")
        host = output("instance_id", "aws_instance_id")
    else:
        host = output("instance_name", "gcp_instance_name")
        zone = output("zone", "gcp_zone") or ""
        project = output("project", "gcp_project") or ""
        if not project:
            team_value("clouds.gcp.project", spec.project, "gcp_project")
            project = spec.project
        if not zone:
            host = None  # the IAP tunnel needs the zone the box landed in
    access = BoxAccess(alias=spec.stack_name, nomad=spec.nomad, cloud=spec.cloud, region=spec.region,
                       hostname=host, local_port=JUPYTER_PORT + index, project=project, zone=zone, user=user)
    return access, problems


def render_block(team: str, accesses: Sequence[BoxAccess]) -> str:
    """The managed block, markers included, ending with a newline."""
    lines = [begin_marker(team),
             "# Managed by `nomadrig ssh-config --write`: edits inside this block are replaced on the next write."]
    for access in accesses:
        if not access.hostname:
            lines.append(f"# {access.note}")
            continue
        for keyword, value in access.directives():
            lines.append(f"{keyword} {value}" if keyword == "Host" else f"    {keyword} {value}")
    lines.append(end_marker(team))
    block = "\n".join(lines) + "\n"
    check_block(block, team, accesses)
    return block


def parse_directives(block: str) -> list[tuple[str, str]]:
    """(keyword, value) of every non-comment line, split the way ssh splits lines (on LF only)."""
    found = []
    for line in block.split("\n"):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, value = stripped.partition(" ")
            found.append((keyword, value.strip()))
    return found


def check_block(block: str, team: str, accesses: Sequence[BoxAccess]) -> None:
    """Parse the rendered block back: exactly one Host per deployed box, with exactly its directives.

    The values were checked already; this guards the rendering itself (a note,
    a marker, a future field) against ever adding a line, a Host or an option.
    Line breaks other than LF (CR, VT, FF, NEL, U+2028...) are refused too:
    editors and other tools split on them even where ssh does not.
    """
    expected = [d for access in accesses if access.hostname for d in access.directives()]
    found = parse_directives(block)
    odd_breaks = len(block.splitlines()) != block.count("\n") or "\r" in block
    if found != expected or odd_breaks or block.count(begin_marker(team)) != 1:
        extra = [d for d in found if d not in expected][:3]
        raise CloudError(f"ssh-config refused: the rendered block for team {team} is not the entries meant "
                         f"(unexpected: {shown(extra)}); nothing was printed or written.\n"
                         "  This is a nomadrig bug: please report it with `nomadrig outputs` of the team's boxes.")


def _block_spans(text: str, team: str, filename: str) -> list[tuple[int, int]]:
    """(start, end) character offsets of each managed block of `team`, end after the END line."""
    begin, end = begin_marker(team), end_marker(team)
    spans: list[tuple[int, int]] = []
    offset, start, start_line = 0, None, 0
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        stripped = line.rstrip("\r\n").strip()
        if stripped == begin:
            if start is not None:
                raise _marker_error(filename, number, f"a second {begin!r} before {end!r} (line {start_line})")
            start, start_line = offset, number
        elif stripped == end:
            if start is None:
                raise _marker_error(filename, number, f"{end!r} without a {begin!r} before it")
            spans.append((start, offset + len(line)))
            start = None
        offset += len(line)
    if start is not None:
        raise _marker_error(filename, start_line, f"{begin!r} without a matching {end!r}")
    return spans


def _marker_error(filename: str, line: int, message: str) -> BadInputError:
    return BadInputError(filename, [InputProblem("", f"broken nomadrig block: {message}.",
                                                 "Delete the damaged block (BEGIN to END lines) by hand, "
                                                 "then run `nomadrig ssh-config --write` again.", line)])


def merge_block(existing: str, team: str, block: str, filename: str = "~/.ssh/config") -> str:
    """`existing` with the team's block replaced (first occurrence) or appended; the rest untouched.

    Appending (not prepending) matters: options written before the first Host
    line are global, and a block put in front would capture them.
    """
    spans = _block_spans(existing, team, filename)
    if spans:
        first_start, first_end = spans[0]
        out = existing[:first_start] + block
        cursor = first_end
        for start, end in spans[1:]:  # duplicates from a hand edit: one block remains
            out += existing[cursor:start]
            cursor = end
        return out + existing[cursor:]
    if not existing:
        return block
    separator = "" if existing.endswith("\n\n") else ("\n" if existing.endswith("\n") else "\n\n")
    return existing + separator + block


@dataclass(frozen=True)
class WriteResult:
    path: Path
    changed: bool
    backup: Path | None


def default_config_path() -> Path:
    return Path.home() / ".ssh" / "config"


def write_block(team: str, block: str, path: Path | None = None) -> WriteResult:
    """Put the block into the ssh config file: idempotent, atomic, with a backup of the previous file.

    A symlinked config (dotfile managers) is written through to its target,
    so the link survives. A missing ~/.ssh is created 0700, a missing file 0600.
    """
    path = path or default_config_path()
    target = path.resolve() if path.is_symlink() else path
    directory = target.parent
    if not directory.exists():
        directory.mkdir(parents=True, mode=0o700)
        directory.chmod(0o700)
    existing = target.read_text() if target.exists() else ""
    merged = merge_block(existing, team, block, str(path))
    if target.exists() and merged == existing:
        return WriteResult(path, changed=False, backup=None)
    backup = None
    mode = 0o600
    if target.exists():
        mode = stat.S_IMODE(target.stat().st_mode)
        backup = target.with_name(target.name + BACKUP_SUFFIX)
        shutil.copy2(target, backup)
        backup.chmod(0o600)
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.nomadrig-")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(merged)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return WriteResult(path, changed=True, backup=backup)
