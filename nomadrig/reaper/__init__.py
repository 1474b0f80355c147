"""The reaper (`nomadrig reap`): stop what the idle agent missed, destroy what stayed
stopped or expired (data volume snapshotted and kept), report orphans, and never
touch an unmanaged or protected resource. Dry run unless applied.

Cloud SDKs are imported inside the adapters, so importing this package is cheap.
"""

from nomadrig.reaper.inventory import CpuWindow, ManagedInstance, SnapshotRef
from nomadrig.reaper.lock import ReaperLockHeld
from nomadrig.reaper.ports import BoxStacks, ReaperCloud, StackRef
from nomadrig.reaper.render import report_dict, report_json, unreadable_lines
from nomadrig.reaper.run import ActionRecord, ReapReport, run_reaper
from nomadrig.reaper.verdicts import Action, ReapDecision, ReapPolicy, judge, judge_all

__all__ = [
    "Action",
    "ActionRecord",
    "BoxStacks",
    "CpuWindow",
    "ManagedInstance",
    "ReapPolicy",
    "ReapReport",
    "ReaperCloud",
    "ReaperLockHeld",
    "SnapshotRef",
    "StackRef",
    "ReapDecision",
    "judge",
    "judge_all",
    "report_dict",
    "report_json",
    "run_reaper",
    "unreadable_lines",
]
