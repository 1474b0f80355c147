"""The idle decision on recorded scenarios, replayed timer run by timer run.

Each scenario in ``tests/fixtures/agent/scenarios/`` is a series of samples
(built from samples recorded on an H100, see ``make_scenarios.py``) with the
action every run must take and the final verdict. The replay does what
``nomadrig-agent tick`` does: decide on the history so far, then store the
action in the sample, so the grace period is carried by the history alone.
"""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nomadrig.agent.config import AgentConfig, ConfigError
from nomadrig.agent.decision import Decision, decide

SCENARIO_DIR = Path(__file__).parent / "fixtures" / "agent" / "scenarios"
SCENARIOS = sorted(SCENARIO_DIR.glob("*.json"))
QUIET_SAMPLE = json.loads((SCENARIO_DIR / "grace_warn_then_shutdown.json").read_text())["samples"][0]


def replay(samples: list[dict[str, Any]], config: AgentConfig) -> list[Decision]:
    """Decide run by run as the timer would, recording each run's action in its sample."""
    history: list[dict[str, Any]] = []
    decisions = []
    for sample in copy.deepcopy(samples):
        history.append(sample)
        decision = decide(history, config, now=sample["t"])
        sample["action"] = decision.action
        decisions.append(decision)
    return decisions


def run_lengths(actions: list[str]) -> list[list[Any]]:
    return [[action, len(list(group))] for action, group in itertools.groupby(actions)]


def test_there_are_enough_recorded_scenarios():
    assert len(SCENARIOS) >= 12, [p.name for p in SCENARIOS]


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_takes_the_expected_action_at_every_run(path: Path):
    scenario = json.loads(path.read_text())
    config = AgentConfig.from_dict(scenario["config"])
    decisions = replay(scenario["samples"], config)

    assert run_lengths([d.action for d in decisions]) == scenario["expect_actions"], scenario["description"]
    final, expected = decisions[-1], scenario["expect_final"]
    assert final.idle is expected["idle"], final.reasons
    assert final.action == expected["action"], final.reasons
    text = "\n".join(final.reasons)
    for fragment in expected.get("reasons_include", []):
        assert fragment in text, f"{fragment!r} not in reasons:\n{text}"
    if "cancelled_at" in expected:
        assert [i for i, d in enumerate(decisions) if d.cancelled_warning] == expected["cancelled_at"]
    if "warned_at" in expected:
        assert [i for i, d in enumerate(decisions) if d.notify_warning] == expected["warned_at"]


def test_idle_box_reports_when_its_quiet_stretch_began():
    scenario = json.loads((SCENARIO_DIR / "lease_held_then_expired.json").read_text())
    final = replay(scenario["samples"], AgentConfig.from_dict(scenario["config"]))[-1]
    lease_expiry = scenario["samples"][30]["t"]  # the first run after `hold 30m` ran out
    assert final.idle_since == pytest.approx(lease_expiry)


def test_users_are_warned_once_per_idle_stretch_not_every_minute():
    scenario = json.loads((SCENARIO_DIR / "notebook_open_no_kernel_activity.json").read_text())
    decisions = replay(scenario["samples"], AgentConfig.from_dict(scenario["config"]))
    assert sum(d.notify_warning for d in decisions) == 1
    warned = next(d for d in decisions if d.notify_warning)
    assert warned.shutdown_in_seconds == pytest.approx(600)


def test_nothing_is_decided_on_a_stale_history():
    samples = json.loads((SCENARIO_DIR / "grace_warn_then_shutdown.json").read_text())["samples"]
    config = AgentConfig(mode="shutdown", idle_minutes=30, grace_minutes=0)
    assert decide(samples, config, now=samples[-1]["t"]).action == "shutdown"
    later = decide(samples, config, now=samples[-1]["t"] + 3600)
    assert later.action == "none" and not later.idle
    assert "stale" in later.reasons[0]


def test_an_empty_history_is_not_idle():
    decision = decide([], AgentConfig(), now=0.0)
    assert not decision.idle and decision.action == "none"


def test_a_gpu_holding_memory_but_not_computing_counts_only_when_configured():
    sample = json.loads((SCENARIO_DIR / "training_busy_gpu_quiet_cpu.json").read_text())["samples"][0]
    sample = copy.deepcopy(sample)
    sample["gpu"]["devices"][0]["util"] = 0.0  # the recorded process still holds 1130 MiB
    samples = [dict(sample, t=sample["t"] + 60 * i, mono=sample["mono"] + 60 * i) for i in range(31)]
    default = decide(samples, AgentConfig(idle_minutes=30), now=samples[-1]["t"])
    strict = decide(samples, AgentConfig(idle_minutes=30, gpu_process_is_activity=True), now=samples[-1]["t"])
    assert default.idle and "computed nothing" in default.signals["gpu"]["detail"]
    assert not strict.idle and strict.signals["gpu"]["state"] == "active"


def test_gpu_utilisation_not_reported_falls_back_on_the_other_signals():
    sample = copy.deepcopy(QUIET_SAMPLE)
    sample["gpu"]["devices"][0]["util"] = None  # nvidia-smi printed [N/A]
    decision = decide([sample], AgentConfig(), now=sample["t"])
    assert decision.signals["gpu"]["state"] == "unknown"
    assert "[N/A]" in decision.signals["gpu"]["detail"]
    assert decision.reasons[0].startswith("not idle yet")  # quiet, counting, on the other signals


# --- configuration errors a user can read -------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"mode": "stop"}, "mode must be one of report|shutdown"),
        ({"idle_minutes": "60"}, "idle_minutes must be a whole number"),
        ({"idle_minute": 60}, "unknown field(s) idle_minute"),
        ({"grace_minutes": -1}, "grace_minutes must be 0 or more"),
        ({"poweroff_command": "systemctl poweroff"}, "poweroff_command must be a list of strings"),
        ({"ssh_port": 70000}, "ssh_port must be a TCP port"),
    ],
)
def test_bad_config_names_the_field_and_the_fix(raw: dict[str, Any], fragment: str):
    with pytest.raises(ConfigError) as error:
        AgentConfig.from_dict(raw, source="/etc/nomadrig/agent.json")
    assert fragment in str(error.value)
    assert str(error.value).startswith("/etc/nomadrig/agent.json: ")


# --- properties ----------------------------------------------------------------------------

ACTIVITY = {
    "gpu": lambda s: s["gpu"]["devices"][0].update(util=87.0),
    "cpu": lambda s: s["cpu"].update(load1=9.0),
    "ssh": lambda s: s["ssh"].update(connections=[{"peer": "127.0.0.1:54256", "kind": "loopback"}]),
    "cloud_init": lambda s: s["cloud_init"].update(running=True),
    "lease": lambda s: s["lease"].update(until=s["t"] + 600),
    "jupyter": lambda s: s["jupyter"].update(
        kernels=[{"id": "k", "source": "api", "state": "busy", "last_activity": s["t"]}]
    ),
}


def minute_series(count: int, active: dict[int, str], jitter: list[float]) -> list[dict[str, Any]]:
    samples = []
    t, mono = QUIET_SAMPLE["t"], QUIET_SAMPLE["mono"]
    for i in range(count):
        sample = copy.deepcopy(QUIET_SAMPLE)
        sample["t"], sample["mono"] = t, mono
        if i in active:
            ACTIVITY[active[i]](sample)
        samples.append(sample)
        step = 60.0 + jitter[i % len(jitter)]
        t, mono = t + step, mono + step
    return samples


@settings(max_examples=150, deadline=None)
@given(
    idle_minutes=st.integers(min_value=1, max_value=40),
    count=st.integers(min_value=1, max_value=70),
    active=st.dictionaries(st.integers(min_value=0, max_value=69), st.sampled_from(sorted(ACTIVITY)), max_size=4),
    jitter=st.lists(st.floats(min_value=-5, max_value=5), min_size=1, max_size=5),
)
def test_any_activity_within_the_window_means_not_idle(idle_minutes, count, active, jitter):
    samples = minute_series(count, active, jitter)
    decision = decide(samples, AgentConfig(idle_minutes=idle_minutes), now=samples[-1]["t"])
    last_activity = max((i for i in active if i < count), default=None)
    if decision.idle:
        # Every sample from the start of the window on was quiet ...
        window_start = samples[-1]["mono"] - idle_minutes * 60
        assert all(i not in active for i, s in enumerate(samples) if s["mono"] >= window_start)
        assert decision.quiet_seconds >= idle_minutes * 60
    if last_activity is not None:
        # ... and the quiet stretch never reaches back over an active sample.
        quiet_since_mono = samples[-1]["mono"] - decision.quiet_seconds
        assert quiet_since_mono > samples[last_activity]["mono"] or decision.quiet_seconds == 0


@settings(max_examples=100, deadline=None)
@given(
    count=st.integers(min_value=2, max_value=60),
    jump_at=st.integers(min_value=1, max_value=59),
    jump=st.floats(min_value=-86400, max_value=86400),
)
def test_a_wall_clock_jump_never_changes_the_observed_idle_time(count, jump_at, jump):
    samples = minute_series(count, {}, [0.0])
    jumped = copy.deepcopy(samples)
    for sample in jumped[jump_at:]:
        sample["t"] += jump
    config = AgentConfig(idle_minutes=30)
    steady = decide(samples, config, now=samples[-1]["t"])
    shifted = decide(jumped, config, now=jumped[-1]["t"])
    assert shifted.quiet_seconds == pytest.approx(steady.quiet_seconds)
    assert shifted.idle == steady.idle
