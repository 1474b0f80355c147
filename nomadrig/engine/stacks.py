"""What the engine's stacks are: their names, provider config and programs, and what they report.

Plain values and small pure functions, kept apart from `operations.py` (which runs
the Pulumi CLI) so the CLI, the reaper and the tests can name stacks and read
their results without starting Pulumi.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from nomadrig import names
from nomadrig.errors import CloudError

if TYPE_CHECKING:
    from nomadrig.spec import BoxSpec, NetworkSpec, TowerSpec
    from nomadrig.volumes import DataSource

PulumiFn = Callable[[], None]

# ---------------------------------------------------------------- provider config


def cloud_config(cloud: str, region: str, project: str = "") -> dict[str, str]:
    """The default provider's config, set on every stack of a cloud/region; towers' stacks get none.

    The engine makes it from the spec it hands the stack's program (a `NetworkSpec` or a `BoxSpec`:
    its cloud, region and GCP project), so the config and the program name the same place. Only the
    purge stack reads it: the volumes it imports go through the default provider. The network and box
    programs read no config at all (each component makes an explicit provider for its region from its
    spec, `stacks.program`); on their stacks it records where the stack's resources live.
    """
    if cloud == "aws":
        return {"aws:region": region}
    if cloud == "gcp":
        return {"gcp:project": project, "gcp:region": region}  # the box program picks the zone (first one UP)
    raise CloudError(f"unknown cloud {cloud!r}: nomadrig provisions on aws or gcp")


# Operations of a preview or up that change nothing: a read re-reads a resource the stack does not own.
NO_CHANGE_OPS = frozenset({"same", "read"})


# ---------------------------------------------------------------- programs


@dataclass(frozen=True)
class TowerRun:
    """How a tower stack's provider reaches the machine: `nomadrig up TOWER --ssh-key KEY -e VAR=VALUE`.

    The same two settings `nomadrig tower apply` takes, so a tower configured
    by hand and through its stack is configured alike. Both are inputs of the
    `Tower` resource (its variables hash covers them), so the next `up` must
    pass the same ones to report no change.
    """

    ssh_key_file: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    #: False only where the user turned Ansible's host key checking off (``ANSIBLE_HOST_KEY_CHECKING=False``,
    #: e.g. a throwaway test host whose key changes on every boot).
    strict_host_keys: bool = True


class Programs(Protocol):
    """Where the inline Pulumi programs come from (the `stacks` package; tests pass their own).

    Each takes the spec `nomadrig.spec` resolved from the team file, never the `Team`: the
    programs read their spec and no Pulumi config (`cloud_config` says what the engine sets).
    """

    def network(self, spec: NetworkSpec) -> PulumiFn: ...

    def box(self, spec: BoxSpec, network: Mapping[str, Any], data: DataSource | None = None) -> PulumiFn: ...

    def tower(self, spec: TowerSpec, run: TowerRun | None = None) -> PulumiFn: ...


class StackPrograms:
    """The real programs from ``stacks/``; imported on first use (they pull in the cloud SDKs)."""

    def network(self, spec: NetworkSpec) -> PulumiFn:
        from nomadrig.stacks.program import team_program

        return team_program(spec)

    def box(self, spec: BoxSpec, network: Mapping[str, Any], data: DataSource | None = None) -> PulumiFn:
        from nomadrig.stacks.program import box_program

        return box_program(spec, network=network, data=data)

    def tower(self, spec: TowerSpec, run: TowerRun | None = None) -> PulumiFn:
        """A tower stack's program: the `Tower` component, reached as `run` says."""
        from nomadrig.stacks.program import tower_program

        run = run or TowerRun()
        return tower_program(spec, ssh_key_file=run.ssh_key_file, overrides=run.overrides,
                             strict_host_keys=run.strict_host_keys)


def empty_program() -> None:
    """The purge stack's program: it declares nothing, so `destroy` removes what was imported."""


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class StackStatus:
    """One stack of the team as `ls` shows it."""

    name: str
    kind: str  # box | tower | network | other
    subject: str  # nomad, tower or "<cloud>/<region>"
    state: str  # deployed | destroyed | never deployed | failed | updating
    cloud: str
    region: str
    instance_type: str
    hourly_usd: float | None
    last_update: datetime | None
    created: Any  # the `created` output as the backend holds it: a string when nomadrig wrote it
    resource_count: int | None
    outputs: dict[str, Any] = field(default_factory=dict)

    def created_at(self) -> datetime | None:
        """When the box was created (its `created` output); None when absent, not a string or not a time.

        Outputs come from a shared backend: a hand edit may leave a number, a list or a mapping there.
        """
        if not isinstance(self.created, str) or not self.created:
            return None
        try:
            return names.parse_time(self.created)
        except ValueError:
            return None

    def age(self, now: datetime | None = None) -> str:
        """How long the box has existed (from its `created` output), else since its last update."""
        start = self.created_at() or self.last_update
        if start is None:
            return ""
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        hours = ((now or datetime.now(UTC)) - start).total_seconds() / 3600
        return f"{hours:.0f}h" if hours < 48 else f"{hours / 24:.0f}d"

    def ttl_hours_left(self, now: datetime | None = None) -> float | None:
        """Hours until the reaper may destroy the box for its TTL (negative: overdue); None if unknown.

        From the box's own `created` and `ttl_hours` outputs: what the stack
        wrote into its tags, which is what the reaper reads.
        """
        created = self.created_at()
        ttl = self.outputs.get("ttl_hours")
        if created is None or isinstance(ttl, bool) or not isinstance(ttl, int | float) or not math.isfinite(ttl):
            return None
        elapsed = ((now or datetime.now(UTC)) - created).total_seconds() / 3600
        return round(float(ttl) - elapsed, 1)

    def as_dict(self) -> dict[str, Any]:
        return {"stack": self.name, "kind": self.kind, "subject": self.subject, "state": self.state,
                "cloud": self.cloud, "region": self.region, "instance_type": self.instance_type,
                "hourly_usd": self.hourly_usd, "age": self.age(), "ttl_hours_left": self.ttl_hours_left(),
                "last_update": self.last_update.isoformat() if self.last_update else None,
                "resource_count": self.resource_count, "outputs": self.outputs}
