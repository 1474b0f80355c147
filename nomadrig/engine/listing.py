"""Which stacks in the backend are the team's, and what each one is: `nomadrig ls` without the I/O.

The engine reads the backend (stack summaries, outputs, last update); this
module decides from those facts alone, so the rules are the same for every
backend and testable without the Pulumi CLI.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nomadrig.engine.stacks import StackStatus
from nomadrig.names import network_stack_name, tower_stack_name

if TYPE_CHECKING:
    from nomadrig.spec import BoxSpec
    from nomadrig.team.model import Team

__all__ = ["TeamStacks", "stack_base"]


def stack_base(name: str) -> str:
    """``org/project/stack`` (Pulumi Cloud) or ``stack`` (DIY backends) -> ``stack``."""
    return name.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class TeamStacks:
    """The stack names the team file accounts for, and as what: boxes, towers, team networks."""

    team: str
    boxes: Mapping[str, BoxSpec]
    towers: Mapping[str, str]  # stack name -> tower name
    networks: Mapping[str, tuple[str, str]]  # stack name -> (cloud, region)

    @classmethod
    def of(cls, team: Team) -> TeamStacks:
        from nomadrig.spec import box_specs

        return cls(
            team=team.name,
            boxes={spec.stack_name: spec for spec in box_specs(team)},
            towers={tower_stack_name(team.name, t.name): t.name for t in team.towers},
            networks={network_stack_name(team.name, cloud, region): (cloud, region)
                      for cloud in team.clouds.configured() for region in team.clouds.regions(cloud)},
        )

    def may_belong(self, name: str) -> bool:
        """Worth reading: the name carries the team's prefix (the outputs then decide, see `belongs`)."""
        return stack_base(name).startswith(f"{self.team}-")

    def named(self, name: str) -> bool:
        """The team file names this stack."""
        return name in self.boxes or name in self.towers or name in self.networks

    def belongs(self, name: str, outputs: Mapping[str, Any]) -> bool:
        """The team's stack: the team file names it, or its outputs say ``team: <team>``.

        A prefix alone is not enough: team ``vision`` would otherwise list team ``vision-lab``'s stacks.
        (A box of a nomad since removed from the file is found by its outputs.)
        """
        return self.named(name) or outputs.get("team") == self.team

    def status(self, name: str, summary: Any, outputs: dict[str, Any], last: Any) -> StackStatus:
        """One stack's line of `ls`, from its summary, outputs and last update (None: never deployed)."""
        if summary.update_in_progress:
            state = "updating"
        elif last is None:
            state = "never deployed"
        elif last.result == "failed":
            state = f"{last.kind} failed"
        elif last.kind == "destroy" or not summary.resource_count:
            state = "destroyed"
        else:
            state = "deployed"
        spec = self.boxes.get(name)
        kind, subject, cloud, region, itype, hourly = "other", "", "", "", "", None
        if spec is not None:
            kind, subject, cloud, region = "box", spec.nomad, spec.cloud, spec.region
            itype, hourly = spec.instance_type, spec.hourly_usd
        elif name in self.towers:
            kind, subject = "tower", self.towers[name]
        elif outputs.get("nomad"):
            kind, subject = "box", str(outputs["nomad"])  # a box of a nomad no longer in the team file
        elif name in self.networks:  # named by network_stack_name, never parsed by hand (its separator may change)
            kind, (cloud, region) = "network", self.networks[name]
            subject = f"{cloud}/{region}"
        cloud = str(outputs.get("cloud", cloud))
        region = str(outputs.get("region", region))
        itype = str(outputs.get("instance_type", itype))
        return StackStatus(name=name, kind=kind, subject=subject or str(outputs.get("nomad", "")), state=state,
                           cloud=cloud, region=region, instance_type=itype, hourly_usd=hourly,
                           last_update=summary.last_update, created=outputs.get("created"),
                           resource_count=summary.resource_count, outputs=outputs)
