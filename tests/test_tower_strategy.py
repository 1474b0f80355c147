"""Which Ansible strategy a tower run uses, and that the run really hands it to ansible-playbook.

Mitogen halves a rerun, but its reboot handling has open bugs, so a run that may reboot the
tower keeps Ansible's own strategy; a strategy the user set in the environment wins.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nomadrig.team.load import load_team
from nomadrig.towers import runner as runner_module
from nomadrig.towers.strategy import LINEAR, MITOGEN, choose_strategy

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "team.yaml"


def test_a_run_that_cannot_reboot_uses_mitogen_from_the_installed_package() -> None:
    name, env = choose_strategy({"nvidia_driver_allow_reboot": False}, {})
    assert name == MITOGEN
    assert env["ANSIBLE_STRATEGY"] == MITOGEN
    # The folder ansible-playbook loads the plugin from is the installed Mitogen's.
    assert (Path(env["ANSIBLE_STRATEGY_PLUGINS"]) / f"{MITOGEN}.py").is_file()
    import ansible_mitogen

    assert Path(env["ANSIBLE_STRATEGY_PLUGINS"]).is_relative_to(Path(ansible_mitogen.__file__).parent)


@pytest.mark.parametrize("allowed", [True, "true", "yes", "True", 1])
def test_a_run_allowed_to_reboot_keeps_ansibles_own_strategy(allowed: object) -> None:
    assert choose_strategy({"nvidia_driver_allow_reboot": allowed}, {}) == (LINEAR, {})


def test_the_users_strategy_wins() -> None:
    assert choose_strategy({}, {"ANSIBLE_STRATEGY": "free"}) == ("free", {})


def test_without_mitogen_the_run_falls_back_to_linear(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ansible_mitogen" else real_find_spec(name, *a))
    assert choose_strategy({}, {}) == (LINEAR, {})


class _Ran:
    status, rc, events = "successful", 0, [{"event": "playbook_on_start", "event_data": {}}]


@pytest.mark.parametrize(("overrides", "expected"), [({}, MITOGEN), ({"nvidia_driver_allow_reboot": True}, LINEAR)])
def test_the_run_passes_the_chosen_strategy_to_ansible_and_records_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, overrides: dict[str, Any], expected: str
) -> None:
    monkeypatch.delenv("ANSIBLE_STRATEGY", raising=False)
    seen: list[dict[str, Any]] = []

    def fake_run_ansible(*args: object, **kwargs: Any) -> _Ran:
        seen.append(kwargs)
        return _Ran()

    monkeypatch.setattr(runner_module, "_run_ansible", fake_run_ansible)
    options = runner_module.RunOptions(runs_dir=tmp_path / "runs", fetch_public_key=False, overrides=overrides)
    report = runner_module.run(load_team(EXAMPLE), "basement", "apply", options)
    assert report.strategy == expected
    assert (seen[0]["strategy_env"].get("ANSIBLE_STRATEGY") or LINEAR) == expected
    assert f"strategy {expected}" in report.summary()
    assert runner_module.RunReport.from_json(report.to_json()).strategy == expected


def test_the_strategy_reaches_the_child_environment(tmp_path: Path) -> None:
    """Through the real scrubbing: what nomadrig sets survives it, so ansible-playbook sees the plugin folder."""
    from nomadrig.towers.ansible_inputs import scrubbed_env

    _, env = choose_strategy({}, {})
    ours = {**runner_module._runner_env(tmp_path), **env}
    child = scrubbed_env({"HOME": "/root", **ours}, {"HOME": "/root"}, ours)
    assert child["ANSIBLE_STRATEGY"] == MITOGEN and child["ANSIBLE_STRATEGY_PLUGINS"] == env["ANSIBLE_STRATEGY_PLUGINS"]
