"""Agent configuration (``/etc/nomadrig/agent.json``) and the paths the agent reads.

Every path goes through :class:`Paths` so tests (and a dry run on a laptop) can
point the agent at a temporary root with ``NOMADRIG_AGENT_ROOT`` and at a fake
``/proc`` with ``NOMADRIG_AGENT_PROC`` without root privileges.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any

CONFIG_PATH = "/etc/nomadrig/agent.json"
MODES = ("report", "shutdown")


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the field and the fix."""


@dataclass(frozen=True)
class AgentConfig:
    """What the agent needs to decide and act. Defaults suit a tower (report only)."""

    idle_minutes: int = 60
    mode: str = "report"
    grace_minutes: int = 10
    ssh_port: int = 22
    cpu_load_threshold: float = 0.1
    gpu_util_threshold: int = 5
    gpu_process_is_activity: bool = False
    nvidia_smi: str = ""
    state_dir: str = "/var/lib/nomadrig"
    interval_seconds: int = 60
    max_gap_intervals: int = 5
    max_hold_hours: int = 168
    jupyter_runtime_dirs: list[str] = field(default_factory=list)
    poweroff_command: list[str] = field(default_factory=lambda: ["systemctl", "poweroff"])
    #: In report mode, reboot an idle machine whose update waits for a reboot (see ``reboot``).
    reboot_when_pending: bool = False
    reboot_command: list[str] = field(default_factory=lambda: ["systemctl", "reboot"])
    wall_command: list[str] = field(default_factory=lambda: ["wall"])

    @property
    def idle_seconds(self) -> float:
        return self.idle_minutes * 60.0

    @property
    def grace_seconds(self) -> float:
        return self.grace_minutes * 60.0

    @property
    def max_gap_seconds(self) -> float:
        """Longest pause between two samples that still counts as observed."""
        return self.interval_seconds * self.max_gap_intervals

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "agent config") -> AgentConfig:
        """Validate ``raw`` (e.g. the parsed JSON file); unknown keys are errors, not ignored."""
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: expected a JSON object, got {type(raw).__name__}")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise ConfigError(
                "{}: unknown field(s) {}; allowed: {}".format(source, ", ".join(unknown), ", ".join(sorted(known)))
            )
        values: dict[str, Any] = {}
        defaults = cls()
        for name, value in raw.items():
            values[name] = _check_type(source, name, value, getattr(defaults, name))
        config = cls(**values)
        _check_ranges(source, config)
        return config


def _check_type(source: str, name: str, value: Any, default: Any) -> Any:
    """Coerce ``value`` to the type of the field's default, or say what to write instead."""
    where = f"{source}: {name}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be a whole number, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    if isinstance(default, list):
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ConfigError(f'{where} must be a list of strings, e.g. ["a", "b"], got {value!r}')
        return list(value)
    raise ConfigError(f"{where}: unsupported field")  # pragma: no cover - a new field's type


def _check_ranges(source: str, config: AgentConfig) -> None:
    def fail(name: str, problem: str) -> None:
        raise ConfigError(f"{source}: {name} {problem}")

    if config.mode not in MODES:
        fail("mode", "must be one of {}, got {!r}".format("|".join(MODES), config.mode))
    if config.idle_minutes < 1:
        fail("idle_minutes", f"must be at least 1, got {config.idle_minutes}")
    if config.grace_minutes < 0:
        fail("grace_minutes", f"must be 0 or more, got {config.grace_minutes}")
    if not 1 <= config.ssh_port <= 65535:
        fail("ssh_port", f"must be a TCP port (1-65535), got {config.ssh_port}")
    if config.cpu_load_threshold <= 0:
        fail(
            "cpu_load_threshold",
            f"must be above 0 (load per core, e.g. 0.1), got {config.cpu_load_threshold}",
        )
    if not 1 <= config.gpu_util_threshold <= 100:
        fail("gpu_util_threshold", f"must be a percentage (1-100), got {config.gpu_util_threshold}")
    if config.interval_seconds < 5:
        fail("interval_seconds", f"must be at least 5 (the timer period), got {config.interval_seconds}")
    if config.max_gap_intervals < 2:
        fail("max_gap_intervals", f"must be at least 2, got {config.max_gap_intervals}")
    if config.max_hold_hours < 1:
        fail("max_hold_hours", f"must be at least 1, got {config.max_hold_hours}")
    if not config.state_dir.startswith("/"):
        fail("state_dir", f"must be an absolute path, got {config.state_dir!r}")
    for name in ("poweroff_command", "reboot_command", "wall_command"):
        if not getattr(config, name):
            fail(name, f"must name a program, e.g. {json.dumps(getattr(AgentConfig(), name))}")


@dataclass(frozen=True)
class Paths:
    """Where the agent reads and writes; all under ``root`` (``/`` on a real box)."""

    root: str = "/"
    proc: str = "/proc"
    config_file: str = CONFIG_PATH

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Paths:
        env = os.environ if environ is None else environ
        root = env.get("NOMADRIG_AGENT_ROOT", "/") or "/"
        proc = env.get("NOMADRIG_AGENT_PROC") or os.path.join(root, "proc")
        config_file = env.get("NOMADRIG_AGENT_CONFIG") or os.path.join(root, CONFIG_PATH.lstrip("/"))
        return cls(root=root, proc=proc, config_file=config_file)

    def under_root(self, absolute: str) -> str:
        """Map an absolute box path (``/run/cloud-init``) into this root."""
        return os.path.join(self.root, absolute.lstrip("/"))

    def in_proc(self, relative: str) -> str:
        return os.path.join(self.proc, relative)

    def state_dir(self, config: AgentConfig) -> str:
        return self.under_root(config.state_dir)


def load_config(paths: Paths) -> AgentConfig:
    """Read the config file; a missing file means the defaults (a tower in report mode)."""
    try:
        with open(paths.config_file, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return AgentConfig()
    except OSError as error:
        raise ConfigError(f"{paths.config_file}: cannot read ({error.strerror})") from error
    try:
        raw = json.loads(text)
    except ValueError as error:
        raise ConfigError(
            f"{paths.config_file}: not valid JSON ({error}); fix the file or reinstall the agent"
        ) from error
    return AgentConfig.from_dict(raw, source=paths.config_file)
