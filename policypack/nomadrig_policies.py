"""nomadrig's rules as CrossGuard policies: one per resource rule, one per stack rule.

The functions are nomadrig.policy's own, so a preview with this pack and the
offline `nomadrig plan` reach the same verdicts. A rule's severity becomes its
enforcement level (mandatory blocks the update, advisory warns); its
parameters, `allow_public_ip` and `required_tags` are the policy's config.
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

from nomadrig.config import PolicySettings, RuleOverride
from nomadrig.policy import PlannedResource, PolicyContext, Rule, Severity, all_rules
from nomadrig.policy.registry import run_rule

PACK_NAME = "nomadrig"
_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}


def config_schema(rule: Rule) -> PolicyConfigSchema:
    """The settings every rule may read, plus this rule's own parameters with their defaults."""
    defaults = PolicySettings()
    properties: dict[str, dict[str, Any]] = {
        "allow_public_ip": {"type": "boolean", "default": defaults.allow_public_ip,
                            "description": "Boxes may have a public IP (the team file's policy.allow_public_ip)."},
        "required_tags": {"type": "array", "items": {"type": "string"}, "default": list(defaults.required_tags),
                          "description": "Tags (AWS) / labels (GCP, ':' as '-') every box resource carries."},
    }
    for name, default in rule.params.items():
        properties[name] = {"type": _JSON_TYPES.get(type(default), "string"), "default": default}
    return PolicyConfigSchema(properties=properties)


def context_from_config(rule: Rule, config: Mapping[str, Any]) -> PolicyContext:
    """A PolicyContext from the policy's config; what the config leaves out keeps nomadrig's default."""
    defaults = PolicySettings()
    params = {name: config[name] for name in rule.params if name in config}
    settings = PolicySettings(
        allow_public_ip=bool(config.get("allow_public_ip", defaults.allow_public_ip)),
        required_tags=list(config.get("required_tags", defaults.required_tags)),
        # Rule parameters reach the rule the way a team file's `policy.rules` override does.
        rules={rule.id: RuleOverride(params=params)} if params else {},
    )
    return PolicyContext(policy=settings)


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
