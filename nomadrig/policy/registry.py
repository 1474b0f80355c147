"""Where rules register themselves, and how the team's settings switch them.

A rule's id is stable: team files, CrossGuard config and docs refer to it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .model import PolicyContext, Rule, RuleFunc, RuleKind, Severity, Verdict

_RULES: dict[str, Rule] = {}


def _register(kind: RuleKind, id: str, title: str, severity: Severity, applies_to: tuple[str, ...],
              params: Mapping[str, Any] | None) -> Callable[[RuleFunc], RuleFunc]:
    def decorate(func: RuleFunc) -> RuleFunc:
        if id in _RULES:
            raise ValueError(f"rule id {id} registered twice")
        _RULES[id] = Rule(id=id, title=title, severity=severity, kind=kind, func=func,
                          applies_to=applies_to, params=dict(params or {}),
                          description=(func.__doc__ or "").strip())
        return func

    return decorate


def spec_rule(*, id: str, title: str, severity: Severity, kind: RuleKind = "box",
              params: Mapping[str, Any] | None = None) -> Callable[[RuleFunc], RuleFunc]:
    """Register a rule over a BoxSpec ("box"), a Team ("team") or a TowerSpec ("tower")."""
    return _register(kind, id, title, severity, (), params)


def resource_rule(*, id: str, title: str, severity: Severity, applies_to: tuple[str, ...],
                  params: Mapping[str, Any] | None = None) -> Callable[[RuleFunc], RuleFunc]:
    """Register a rule over one PlannedResource of the given type tokens."""
    return _register("resource", id, title, severity, applies_to, params)


def stack_rule(*, id: str, title: str, severity: Severity,
               params: Mapping[str, Any] | None = None) -> Callable[[RuleFunc], RuleFunc]:
    """Register a rule over all resources of a stack (for relations between resources)."""
    return _register("stack", id, title, severity, (), params)


def _load_rules() -> None:
    from . import resource_rules, spec_rules  # noqa: F401  (registers on import)


def all_rules() -> list[Rule]:
    _load_rules()
    return sorted(_RULES.values(), key=lambda r: r.id)


def get_rule(rule_id: str) -> Rule:
    _load_rules()
    return _RULES[rule_id]


def effective(rule: Rule, ctx: PolicyContext) -> tuple[bool, Severity, PolicyContext]:
    """Apply the team's per-rule override: on/off, severity, params merged over defaults."""
    override = ctx.policy.rules.get(rule.id)
    enabled = override.enabled if override else True
    severity = Severity(override.severity) if override and override.severity else rule.severity
    params = {**rule.params, **(override.params if override else {})}
    return enabled, severity, PolicyContext(ctx.policy, ctx.budgets, ctx.usage, ctx.allowed_regions, params)


def run_rule(rule: Rule, subject: Any, subject_name: str, ctx: PolicyContext) -> list[Verdict]:
    enabled, severity, rule_ctx = effective(rule, ctx)
    if not enabled:
        return []
    return [
        Verdict(rule.id, rule.title, v.severity or severity, subject_name, v.message, v.fix)
        for v in rule.func(subject, rule_ctx)
    ]


def rules_of(kind: RuleKind) -> Iterable[Rule]:
    return (r for r in all_rules() if r.kind == kind)
