"""What the offline plan records of each resource a program registers.

Kept apart from `stacks.mocks` (which imports Pulumi) because the plan's
worker processes send these records back to a parent that never loads Pulumi.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RecordedResource:
    """One registered resource: its type token, logical name, inputs (camelCase), URN and parent URN.

    `read`: a resource the program reads by id (``Resource.get``) instead of declaring it: the stack
    attaches or uses it but never creates, updates or deletes it, so the policy has nothing to judge.
    """

    type: str
    name: str
    inputs: Mapping[str, Any]
    urn: str
    parent: str
    custom: bool
    retain_on_delete: bool = False
    protect: bool = False
    read: bool = False
