"""Where rules register themselves, and how the team's settings switch them.

A rule's id is stable: team files, CrossGuard config and docs refer to it.
A rule's parameters are declared with their defaults (and, for numbers, an
inclusive range); an override from a team file must match the default's type
and range, so a rule function never receives a parameter it cannot use.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

from nomadrig.errors import ValueProblem, first_unprintable, shown
from nomadrig.policy.model import PolicyContext, Rule, RuleFunc, RuleKind, Severity, Verdict

_RULES: dict[str, Rule] = {}
MAX_TEXT_PARAM = 1024
_TYPE_WORDS = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}
_VALUE_WORDS = {bool: "a yes/no value", int: "a whole number", float: "a number", str: "text", list: "a list",
                dict: "a mapping", type(None): "empty"}


class ParamProblem(ValueProblem):
    """An override's parameter that the rule does not declare, or of the wrong type or range."""


def _check_declaration(id: str, params: Mapping[str, Any], ranges: Mapping[str, tuple[float, float]]) -> None:
    """Every parameter has a default of a known type; every number a range holding its default."""
    for name, default in params.items():
        if type(default) not in _TYPE_WORDS:
            raise ValueError(f"rule {id}: param {name} default {default!r} is not bool, int, float or str")
        numeric = type(default) in (int, float)
        if numeric and not (name in ranges and ranges[name][0] <= default <= ranges[name][1]):
            raise ValueError(f"rule {id}: numeric param {name} needs a range that holds its default")
    if set(ranges) - set(params):
        raise ValueError(f"rule {id}: ranges for undeclared params {sorted(set(ranges) - set(params))}")


def _register(kind: RuleKind, id: str, title: str, severity: Severity, applies_to: tuple[str, ...],
              params: Mapping[str, Any] | None,
              ranges: Mapping[str, tuple[float, float]] | None) -> Callable[[RuleFunc], RuleFunc]:
    def decorate(func: RuleFunc) -> RuleFunc:
        if id in _RULES:
            raise ValueError(f"rule id {id} registered twice")
        _check_declaration(id, params or {}, ranges or {})
        _RULES[id] = Rule(id=id, title=title, severity=severity, kind=kind, func=func,
                          applies_to=applies_to, params=dict(params or {}), param_ranges=dict(ranges or {}),
                          description=(func.__doc__ or "").strip())
        return func

    return decorate


def spec_rule(*, id: str, title: str, severity: Severity, kind: RuleKind = "box",
              params: Mapping[str, Any] | None = None,
              ranges: Mapping[str, tuple[float, float]] | None = None) -> Callable[[RuleFunc], RuleFunc]:
    """Register a rule over a BoxSpec ("box"), a Team ("team") or a TowerSpec ("tower")."""
    return _register(kind, id, title, severity, (), params, ranges)


def resource_rule(*, id: str, title: str, severity: Severity, applies_to: tuple[str, ...],
                  params: Mapping[str, Any] | None = None,
                  ranges: Mapping[str, tuple[float, float]] | None = None) -> Callable[[RuleFunc], RuleFunc]:
    """Register a rule over one PlannedResource of the given type tokens."""
    return _register("resource", id, title, severity, applies_to, params, ranges)


def stack_rule(*, id: str, title: str, severity: Severity, params: Mapping[str, Any] | None = None,
               ranges: Mapping[str, tuple[float, float]] | None = None) -> Callable[[RuleFunc], RuleFunc]:
    """Register a rule over all resources of a stack (for relations between resources)."""
    return _register("stack", id, title, severity, (), params, ranges)


def describe_params(rule: Rule) -> str:
    """What a rule takes, for a fix: 'warn_at_pct (a whole number, 1-100, default 80)'."""
    if not rule.params:
        return f"{rule.id} takes no parameters."
    described = []
    for name, default in rule.params.items():
        bounds = rule.param_ranges.get(name)
        span = f", {bounds[0]:g}-{bounds[1]:g}" if bounds else ""
        described.append(f"{name} ({_TYPE_WORDS[type(default)]}{span}, default {default!r})")
    return f"{rule.id} takes: {'; '.join(described)}."


def check_param(rule: Rule, name: str, value: Any) -> Any:
    """The value the rule receives for an override of `name`; ParamProblem when it cannot be that.

    The type is the declared default's: booleans are never numbers (YAML's
    `true` is not 1), a whole number is accepted where a float is declared
    (and passed on as a float), numbers must be finite and within the range.
    """
    if name not in rule.params:
        raise ParamProblem(f"{rule.id} has no parameter {shown(name)}.", describe_params(rule))
    wanted = type(rule.params[name])
    accepted = (int, float) if wanted is float else (wanted,)
    if type(value) not in accepted:
        raise ParamProblem(f"{shown(value)} is {_VALUE_WORDS.get(type(value), type(value).__name__)}, but "
                           f"{name} takes {_TYPE_WORDS[wanted]}.", describe_params(rule))
    if wanted is str:
        return _check_text_param(rule, name, value)
    if wanted is bool:
        return value
    low, high = rule.param_ranges[name]
    if (isinstance(value, float) and not math.isfinite(value)) or not low <= value <= high:
        raise ParamProblem(f"{shown(value)} is outside {name}'s range {low:g}-{high:g}.", describe_params(rule))
    return float(value) if wanted is float else value


def _check_text_param(rule: Rule, name: str, value: str) -> str:
    bad = first_unprintable(value)
    if len(value) > MAX_TEXT_PARAM or bad is not None:
        raise ParamProblem(f"{name} must be printable ASCII text of at most {MAX_TEXT_PARAM} characters.",
                           describe_params(rule))
    return value


def all_rules() -> list[Rule]:
    return sorted(_RULES.values(), key=lambda r: r.id)


def get_rule(rule_id: str) -> Rule:
    return _RULES[rule_id]


def effective(rule: Rule, ctx: PolicyContext) -> tuple[bool, Severity, PolicyContext]:
    """Apply the team's per-rule override: on/off, severity, params merged over defaults."""
    override = ctx.policy.rules.get(rule.id)
    enabled = override.enabled if override else True
    severity = Severity(override.severity) if override and override.severity else rule.severity
    overrides = override.params if override else {}
    try:
        params = {**rule.params, **{name: check_param(rule, name, value) for name, value in overrides.items()}}
    except ParamProblem as problem:  # only reachable past team-file validation (e.g. a hand-made context)
        raise ValueError(f"policy.rules.{rule.id}.params: {problem.message} {problem.fix}") from None
    return enabled, severity, dataclasses.replace(ctx, params=params)


def run_rule(rule: Rule, subject: Any, subject_name: str, ctx: PolicyContext) -> list[Verdict]:
    enabled, severity, rule_ctx = effective(rule, ctx)
    if not enabled:
        return []
    return [
        Verdict(rule.id, rule.title, v.severity or severity, subject_name, v.message, v.fix)
        for v in rule.func(subject, rule_ctx)
    ]

