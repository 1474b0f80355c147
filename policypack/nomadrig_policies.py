"""nomadrig's rules as CrossGuard policies: one per resource rule, one per stack rule.

The functions are nomadrig.policy's own, so a preview with this pack and the
offline `nomadrig plan` reach the same verdicts. A rule's severity becomes its
enforcement level (mandatory blocks the update, advisory warns).

`nomadrig up`/`preview` configure every policy with the team's own settings:
``team_policy`` (the team file's policy-relevant part, see
nomadrig.policy.pack_config) and the team's per-rule switch as the policy's
enforcement level. With ``team_policy`` the context is exactly `plan`'s and
the single keys below are not read. Without it (a hand-run
`pulumi preview --policy-pack policypack`), a rule's parameters,
`allow_public_ip` and `required_tags` are the policy's config, the rest
nomadrig's defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from nomadrig.errors import BadInputError
from nomadrig.policy import PlannedResource, PolicyContext, Rule, Severity, all_rules
from nomadrig.policy.pack_config import TEAM_POLICY_KEY, context_from_team_policy
from nomadrig.policy.registry import run_rule
from nomadrig.team.model import PolicySettings, RuleOverride

PACK_NAME = "nomadrig"
_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}


class PackConfigError(Exception):
    """The policy pack config's team settings are not a valid team policy: the pack refuses to judge."""


def config_schema(rule: Rule) -> PolicyConfigSchema:
    """The settings every rule may read, plus this rule's own parameters with their defaults."""
    defaults = PolicySettings()
    properties: dict[str, dict[str, Any]] = {
        TEAM_POLICY_KEY: {"type": "string",
                          "description": "The team file's policy settings as JSON, as `nomadrig up` writes them."},
        "allow_public_ip": {"type": "boolean", "default": defaults.allow_public_ip,
                            "description": "Boxes may have a public IP (the team file's policy.allow_public_ip)."},
        "required_tags": {"type": "array", "items": {"type": "string"}, "default": list(defaults.required_tags),
                          "description": "Tags (AWS) / labels (GCP, ':' as '-') every box resource carries."},
    }
    for name, default in rule.params.items():
        properties[name] = {"type": _JSON_TYPES.get(type(default), "string"), "default": default}
    return PolicyConfigSchema(properties=properties)


def context_from_config(rule: Rule, config: Mapping[str, Any]) -> PolicyContext:
    """A PolicyContext from the policy's config: the team's (as `plan` builds it), else the single keys."""
    if TEAM_POLICY_KEY in config:
        return team_context(config[TEAM_POLICY_KEY])
    defaults = PolicySettings()
    params = {name: config[name] for name in rule.params if name in config}
    settings = PolicySettings(
        allow_public_ip=bool(config.get("allow_public_ip", defaults.allow_public_ip)),
        required_tags=list(config.get("required_tags", defaults.required_tags)),
        # Rule parameters reach the rule the way a team file's `policy.rules` override does.
        rules={rule.id: RuleOverride(params=params)} if params else {},
    )
    return PolicyContext(policy=settings)


def team_context(text: Any) -> PolicyContext:
    """`plan`'s PolicyContext from the engine's ``team_policy``; a PackConfigError naming the problem otherwise."""
    if not isinstance(text, str):
        raise PackConfigError(f"nomadrig policy pack: {TEAM_POLICY_KEY} must be the JSON text nomadrig writes, "
                              f"not {type(text).__name__}.\n  Run `nomadrig up` or `preview`, which rewrite it.")
    try:
        return context_from_team_policy(text)
    except BadInputError as exc:
        raise PackConfigError(f"nomadrig policy pack: the policy pack config holds no valid team policy; "
                              f"nothing was judged:\n{exc}\n  Run `nomadrig up` or `preview` again: they rewrite "
                              "it from the team file.") from None


def enforcement(rule: Rule) -> EnforcementLevel:
    return EnforcementLevel.MANDATORY if rule.severity is Severity.MANDATORY else EnforcementLevel.ADVISORY


def _report(verdicts: list, report: ReportViolation, urn: str | None = None) -> None:
    for verdict in verdicts:
        report(f"{verdict.message}. Fix: {verdict.fix}", urn)


def resource_validation(rule: Rule) -> Callable[[ResourceValidationArgs, ReportViolation], None]:
    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        if not rule.applies(args.resource_type):
            return
        resource = PlannedResource(args.resource_type, args.name, args.props, args.urn)
        ctx = context_from_config(rule, args.get_config())
        _report(run_rule(rule, resource, f"{args.resource_type} {args.name}", ctx), report, args.urn)

    return validate


def stack_validation(rule: Rule) -> Callable[[StackValidationArgs, ReportViolation], None]:
    def validate(args: StackValidationArgs, report: ReportViolation) -> None:
        resources = [PlannedResource(r.resource_type, r.name, r.props, r.urn) for r in args.resources]
        ctx = context_from_config(rule, args.get_config())
        _report(run_rule(rule, resources, "stack", ctx), report)

    return validate


def build_policies() -> list[ResourceValidationPolicy | StackValidationPolicy]:
    """Every resource and stack rule of nomadrig.policy, named by its stable id (e.g. SEC-002)."""
    policies: list[ResourceValidationPolicy | StackValidationPolicy] = []
    for rule in all_rules():
        description = rule.description.splitlines()[0] if rule.description else rule.title
        if rule.kind == "resource":
            policies.append(ResourceValidationPolicy(
                name=rule.id, description=description, display_name=rule.title,
                enforcement_level=enforcement(rule), config_schema=config_schema(rule),
                validate=resource_validation(rule)))
        elif rule.kind == "stack":
            policies.append(StackValidationPolicy(
                name=rule.id, description=description, display_name=rule.title,
                enforcement_level=enforcement(rule), config_schema=config_schema(rule),
                validate=stack_validation(rule)))
    return policies
