"""The team file's model: one frozen `Team` that everything nomadrig does starts from.

- `model`: the schema (pydantic, strict: unknown keys and loose types refused) and the shape of each field.
- `problems`: pydantic's errors as located problems (file, line, field, value, fix).
- `checks`: checks that span fields or need the catalog, the policy's rules or the GPU matrix.
- `load`: `load_team` / `parse_team`, the one way to read a team file.

This package's face is the model only. `load` and `checks` read the catalog
and the policy, which themselves read the model: importing them here would
make the policy's import of the model run them half-initialised. Import
`nomadrig.team.load.load_team` to read a file.
"""

from nomadrig.team.model import (
    DEFAULT_BACKEND,
    NAME_RE,
    NAME_RULE,
    SUPPORTED_OS,
    AwsCloud,
    Budgets,
    Clouds,
    GcpCloud,
    Nomad,
    PolicySettings,
    RuleOverride,
    StateBackend,
    Team,
    Tower,
    TowerGpu,
    Usage,
)

__all__ = ["DEFAULT_BACKEND", "NAME_RE", "NAME_RULE", "SUPPORTED_OS", "AwsCloud", "Budgets", "Clouds", "GcpCloud",
           "Nomad", "PolicySettings", "RuleOverride", "StateBackend", "Team", "Tower", "TowerGpu", "Usage"]
