"""Entry point Pulumi runs for `pulumi preview --policy-pack policypack`: serve nomadrig's rules.

No import path is edited here. Pulumi runs this folder with `python -m pulumi.policy <engine> <folder>`,
which puts the folder itself first on the import path (so `nomadrig_policies` is found beside this file),
and the interpreter is the one nomadrig runs on (`nomadrig up`/`preview` hand it to the CLI as
PULUMI_PYTHON_CMD), so `nomadrig` is the installed package, or the checkout's editable install.
"""

from __future__ import annotations

from nomadrig_policies import PACK_NAME, build_policies
from pulumi_policy import EnforcementLevel, PolicyPack

PolicyPack(name=PACK_NAME, policies=build_policies(), enforcement_level=EnforcementLevel.MANDATORY)
