"""The offline plan: the real Pulumi programs under mocks, every resource judged by the policy.

- `planner`: `plan_team` (specs → mock runs → resources attributed to their stacks → verdicts) and the
  split of a big team's boxes across worker processes.
- `worker`: ``python -m nomadrig.plan.worker``, one such process.
"""

from nomadrig.plan.planner import (
    PlanResult,
    StackPlan,
    attribute,
    plan_team,
    record_resources,
    run_programs,
    select_specs,
    spec_verdicts,
)

__all__ = ["PlanResult", "StackPlan", "attribute", "plan_team", "record_resources", "run_programs", "select_specs",
           "spec_verdicts"]
