"""Entry point Pulumi runs for `pulumi preview --policy-pack policypack`: serve nomadrig's rules."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
try:
    import nomadrig  # noqa: F401
except ModuleNotFoundError:  # the pack runs from a checkout where nomadrig is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nomadrig_policies import PACK_NAME, build_policies  # noqa: E402
from pulumi_policy import EnforcementLevel, PolicyPack  # noqa: E402

PolicyPack(name=PACK_NAME, policies=build_policies(), enforcement_level=EnforcementLevel.MANDATORY)
