"""The vocabulary of the policy: rules, what they look at, and what they say.

Rules are plain functions so the offline plan, the stacks and the CrossGuard
pack all run the very same code; this module holds the shared types.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from nomadrig.spec import BoxSpec
    from nomadrig.team.model import Budgets, Clouds, PolicySettings, Team, Usage


class Severity(StrEnum):
    MANDATORY = "mandatory"
    ADVISORY = "advisory"


RuleKind = Literal["box", "team", "tower", "resource", "stack"]


@dataclass(frozen=True)
class Violation:
    """What a rule yields: the message names the subject and the risk, the fix is what to type."""

    message: str
    fix: str
    severity: Severity | None = None  # None: the rule's configured severity


@dataclass(frozen=True)
class Verdict:
    """A violation tied to its rule, as reported to the user."""

    rule_id: str
    title: str
    severity: Severity
    subject: str
    message: str
    fix: str

    @property
    def mandatory(self) -> bool:
        return self.severity is Severity.MANDATORY

    def as_dict(self) -> dict[str, str]:
        return {"rule": self.rule_id, "title": self.title, "severity": self.severity.value,
                "subject": self.subject, "message": self.message, "fix": self.fix}


@dataclass(frozen=True)
class PlannedResource:
    """A resource as Pulumi passes it: type token, logical name, inputs with camelCase wire names."""

    type: str
    name: str
    props: Mapping[str, Any]
    urn: str = ""


@dataclass(frozen=True)
class PolicyContext:
    """What rules may consult besides their subject: the team's policy settings and this rule's params."""

    policy: PolicySettings
    budgets: Budgets | None = None
    usage: Usage | None = None
    allowed_regions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    clouds: Clouds | None = None  # the team's accounts, projects and image overrides (team rules)

    @classmethod
    def from_team(cls, team: Team) -> PolicyContext:
        return cls(
            policy=team.policy,
            budgets=team.budgets,
            usage=team.usage,
            allowed_regions={c: tuple(team.clouds.regions(c)) for c in team.clouds.configured()},
            clouds=team.clouds,
        )

    @classmethod
    def default(cls) -> PolicyContext:
        from nomadrig.team.model import PolicySettings

        return cls(policy=PolicySettings())

    def param(self, name: str, default: Any) -> Any:
        return self.params.get(name, default)


RuleFunc = Callable[[Any, PolicyContext], Iterable[Violation]]


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    severity: Severity
    kind: RuleKind
    func: RuleFunc
    applies_to: tuple[str, ...] = ()  # resource type tokens, for resource rules
    params: Mapping[str, Any] = field(default_factory=dict)  # documented defaults; their types are the params' types
    param_ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # inclusive, for numeric params
    description: str = ""

    def applies(self, type_token: str) -> bool:
        return not self.applies_to or type_token in self.applies_to


@dataclass(frozen=True)
class TeamPlan:
    """The subject of team rules: every box the team declares (the rules price them, fixed costs included)."""

    team: str
    boxes: tuple[BoxSpec, ...]
