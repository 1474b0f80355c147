"""The cloud-init user data of a box, rendered from `templates/cloud-init.yaml.j2`.

One template serves both clouds; only the data device differs (AWS: the EBS
volume's NVMe id, GCP: the attached disk's device name). The result is checked
here, before any stack sees it: it must parse as YAML and carry every agent file
intact; `gzip_user_data` packs it for EC2 and enforces the 16 KB limit there.
"""

from __future__ import annotations

import functools
import gzip
import json
import re
import shlex
from typing import TYPE_CHECKING, Any

from nomadrig.paths import templates_dir

if TYPE_CHECKING:
    from nomadrig.spec import BoxSpec

TEMPLATE_NAME = "cloud-init.yaml.j2"
EC2_USER_DATA_LIMIT = 16 * 1024  # bytes, of what EC2 stores (the gzipped text when it is gzipped)
# nofail: nothing that wants local-fs.target may ever wait for the data volume (boot must not block on it).
MOUNT_OPTIONS = "defaults,nofail,noatime"
# Unattended-upgrade blacklist entries (regular expressions): the image's NVIDIA driver and CUDA stay as shipped.
HELD_PATTERNS = ("nvidia-", "libnvidia-", "cuda-", "libcudnn", "libnccl")
_DEVICE_RE = re.compile(r"^/dev/[A-Za-z0-9._/+:-]+$")


class UserDataError(ValueError):
    """The rendered user data would not work on the box; the message says what to change."""


def systemd_escape_path(path: str) -> str:
    """`systemd-escape --path`: the unit name systemd gives a path (for the data device's .device unit)."""
    trimmed = path.strip("/")
    out = []
    for i, ch in enumerate(trimmed):
        if ch == "/":
            out.append("-")
        elif ch.isascii() and (ch.isalnum() or ch in ":_") or (ch == "." and i > 0):
            out.append(ch)
        else:
            out.append("".join(f"\\x{byte:02x}" for byte in ch.encode()))
    return "".join(out)


def yamlstr(value: Any) -> str:
    """A one-line YAML double-quoted scalar that reads back as exactly the text, whatever it holds.

    PyYAML's own emitter, not JSON's: JSON writes a character beyond U+FFFF as a surrogate pair, which
    YAML refuses, and leaves U+2028/U+0085 raw, which YAML folds as line breaks.
    """
    return _double_quoted(str(value))


@functools.lru_cache(maxsize=1024)
def _double_quoted(text: str) -> str:
    """Cached: every box of a team quotes the same agent files (80 of a box's scalars, most of its render time)."""
    import yaml

    quoted = yaml.dump(text, Dumper=yaml.SafeDumper, default_style='"', allow_unicode=False, width=2**31 - 1)
    return quoted.rstrip("\n").removesuffix("\n...")


def agent_config(spec: BoxSpec) -> dict[str, Any]:
    """The idle agent on a box stops it: mode shutdown, after the nomad's idle minutes."""
    return {"mode": "shutdown", "idle_minutes": spec.idle_minutes}


@functools.lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir())), undefined=jinja2.StrictUndefined,
                             autoescape=False, keep_trailing_newline=True)
    env.filters["yamlstr"] = yamlstr
    env.filters["shquote"] = shlex.quote
    return env


def render_user_data(spec: BoxSpec, data_device: str) -> str:
    """The box's #cloud-config: nomad account + key, /data, upgrade policy, idle agent."""
    from nomadrig.agent.bundle import cloud_init_runcmd

    if not _DEVICE_RE.match(data_device):
        raise UserDataError(f"data device {data_device!r} is not a /dev path; pass the stable by-id path")
    files = _agent_write_files(json.dumps(agent_config(spec), sort_keys=True))
    text = _environment().get_template(TEMPLATE_NAME).render(
        spec=spec, data_device=data_device, device_unit=systemd_escape_path(data_device) + ".device",
        mount_options=MOUNT_OPTIONS, held_patterns=HELD_PATTERNS, agent_files=files,
        agent_commands=cloud_init_runcmd())
    return _without_comments(_check(text, files))


@functools.lru_cache(maxsize=32)
def _agent_write_files(config_json: str) -> list[dict[str, str]]:
    """The agent's write_files entries; compacting its sources is slow, and a team shares a few configs."""
    from nomadrig.agent.bundle import cloud_init_write_files

    return cloud_init_write_files(json.loads(config_json), compact=True)


def _check(text: str, files: list[dict[str, str]]) -> dict[str, Any]:
    """Parse what we rendered: a template slip must fail here, not as a box that never set itself up."""
    import yaml

    if not text.startswith("#cloud-config\n"):
        raise UserDataError("user data must start with '#cloud-config'")
    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise UserDataError(f"templates/{TEMPLATE_NAME} rendered invalid YAML: {exc}") from exc
    written = {entry["path"]: entry["content"] for entry in data.get("write_files", [])}
    for item in files:
        if written.get(item["path"]) != item["content"]:
            raise UserDataError(f"agent file {item['path']} did not survive rendering intact")
    return data


def _without_comments(data: dict[str, Any]) -> str:
    """The parsed cloud-config written out again: the same data, without the template's YAML comments.

    The comments are for whoever reads the template; on the box they would only take bytes of EC2's
    16 KB (about 460 gzipped). The text inside files (a script's comments) is data and stays.
    libyaml's emitter where PyYAML has it: the same text as PyYAML's own (a changed user data would
    stop and start every running box on the next `up`; tests/test_userdata.py holds them equal) at a
    fraction of the time, which was a third of `nomadrig plan` for a big team.
    """
    import yaml

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return "#cloud-config\n" + yaml.dump(data, Dumper=dumper, sort_keys=False, width=2**31 - 1, allow_unicode=False)


def gzip_user_data(text: str) -> bytes:
    """gzip (cloud-init unpacks it) within EC2's limit, else an error saying what to shrink."""
    packed = gzip.compress(text.encode(), mtime=0)
    if len(packed) > EC2_USER_DATA_LIMIT:
        raise UserDataError(f"user data is {len(packed)} bytes gzipped, above EC2's {EC2_USER_DATA_LIMIT}; "
                            "shrink the agent bundle or the template")
    return packed


def gzipped_size(text: str) -> int:
    return len(gzip.compress(text.encode(), mtime=0))
