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
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import BadInputError, InputProblem

if TYPE_CHECKING:
    from .spec import BoxSpec

JUPYTER_PORT = 8888
BACKUP_SUFFIX = ".nomadrig.bak"


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
        if self.cloud == "aws":
            return ("aws ssm start-session --target %h --document-name AWS-StartSSHSession "
                    f"--parameters 'portNumber=%p' --region {self.region}")
        return (f"gcloud compute start-iap-tunnel {self.hostname} %p --listen-on-stdin "
                f"--project={self.project} --zone={self.zone}")

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
    """
    accesses = []
    for index, spec in enumerate(specs):
        out = outputs.get(spec.stack_name) or {}
        if spec.cloud == "aws":
            host = out.get("instance_id")
            zone, project = "", spec.project
        else:
            host = out.get("instance_name")
            zone, project = str(out.get("zone") or ""), str(out.get("project") or spec.project)
            if not zone:
                host = None  # the IAP tunnel needs the zone the box landed in
        accesses.append(BoxAccess(alias=spec.stack_name, nomad=spec.nomad, cloud=spec.cloud, region=spec.region,
                                  hostname=str(host) if host else None, local_port=JUPYTER_PORT + index,
                                  project=project, zone=zone, user=str(out.get("ssh_user") or "")))
    return accesses


def render_block(team: str, accesses: Sequence[BoxAccess]) -> str:
    """The managed block, markers included, ending with a newline."""
    lines = [begin_marker(team),
             "# Managed by `nomadrig ssh-config --write`: edits inside this block are replaced on the next write."]
    for access in accesses:
        if not access.hostname:
            lines.append(f"# {access.note}")
            continue
        lines += [
            f"Host {access.alias}",
            f"    HostName {access.hostname}",
            f"    User {access.login}",
            f"    ProxyCommand {access.proxy_command}",
            f"    LocalForward {access.local_port} localhost:{JUPYTER_PORT}",
            "    ServerAliveInterval 60",
        ]
    lines.append(end_marker(team))
    return "\n".join(lines) + "\n"


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
