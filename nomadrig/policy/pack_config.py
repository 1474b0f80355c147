"""The team's policy as the CrossGuard pack receives it: Pulumi's `--policy-pack-config` file.

`nomadrig plan` judges with ``PolicyContext.from_team(team)``; `up` and
`preview` run the same rules inside the pack, in another process that never
sees the team file. So the engine writes, per pack policy (one per resource
or stack rule), the team's per-rule switch as Pulumi's ``enforcementLevel``
(off -> disabled, severity -> advisory/mandatory) and the team-wide settings
as ``team_policy``: the policy-relevant part of the team file as JSON. The
pack parses that text with the team file's own validation (`parse_team`) and
builds its context with the same constructor `plan` uses, so both paths hold
the same settings by construction.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from nomadrig.policy.model import PolicyContext, Rule, Severity
from nomadrig.policy.registry import all_rules, effective

if TYPE_CHECKING:
    from nomadrig.team.model import Team

TEAM_POLICY_KEY = "team_policy"
PACK_CONFIG_SOURCE = "policy pack config team_policy"
# The parts of a team file the policy reads (PolicyContext.from_team); names, keys and hosts stay out.
TEAM_POLICY_FIELDS = ("team", "clouds", "budgets", "usage", "policy")
PACK_RULE_KINDS = ("resource", "stack")


def team_policy_json(team: Team) -> str:
    """The team-wide settings the pack needs, as a JSON team document (a team file without nomads or towers)."""
    fields = {name for name, info in type(team).model_fields.items() if (info.alias or name) in TEAM_POLICY_FIELDS}
    return json.dumps(team.model_dump(mode="json", include=fields), sort_keys=True)


def enforcement_level(rule: Rule, ctx: PolicyContext) -> str:
    """Pulumi's enforcement level of a rule under the team's override: what `plan` would report it as."""
    enabled, severity, _ = effective(rule, ctx)
    if not enabled:
        return "disabled"
    return "mandatory" if severity is Severity.MANDATORY else "advisory"


def pack_config(team: Team) -> dict[str, dict[str, Any]]:
    """The `--policy-pack-config` document for the team: one entry per pack policy (its rule id)."""
    ctx = PolicyContext.from_team(team)
    settings = team_policy_json(team)
    return {rule.id: {"enforcementLevel": enforcement_level(rule, ctx), TEAM_POLICY_KEY: settings}
            for rule in all_rules() if rule.kind in PACK_RULE_KINDS}


@lru_cache(maxsize=8)
def context_from_team_policy(text: str) -> PolicyContext:
    """The PolicyContext `plan` builds, from a `team_policy` value; BadInputError when the text is not valid.

    The text is input (a file in the state directory anyone with access may
    edit): it goes through `parse_team`, every check a team file gets, and
    must hold only the fields the engine writes. Cached: each pack policy
    reads the same text for every resource.
    """
    from nomadrig.errors import BadInputError, InputProblem
    from nomadrig.team.load import parse_team

    rewrite = "Run `nomadrig up` or `preview` again: the engine rewrites it from the team file."
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise BadInputError(PACK_CONFIG_SOURCE, [InputProblem("", f"not JSON ({exc}).", rewrite)]) from None
    extra = sorted(set(document) - set(TEAM_POLICY_FIELDS)) if isinstance(document, dict) else []
    if extra:
        raise BadInputError(PACK_CONFIG_SOURCE, [InputProblem(
            extra[0], f"not a field the policy reads (only {', '.join(TEAM_POLICY_FIELDS)}).", rewrite)])
    team = parse_team(text, PACK_CONFIG_SOURCE)
    return PolicyContext.from_team(team)
