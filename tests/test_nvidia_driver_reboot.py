"""The driver's reboot waits for an idle tower: the nvidia_driver role asks the idle agent first.

Runs the role's real reboot tasks (``tasks_from: reboot``) with ansible-playbook
against this machine over a local connection, with the agent replaced by a
script that prints what ``nomadrig-agent status --json`` prints. A local
connection is itself a reason never to reboot, so nothing here can restart
the machine; the tests read which reason the role gives.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
ANSIBLE_PLAYBOOK = shutil.which("ansible-playbook") or str(Path(sys.executable).parent / "ansible-playbook")

PLAYBOOK = """\
- name: Run the driver role's reboot decision on this machine
  hosts: all
  gather_facts: false
  tasks:
    - name: Decide the reboot as the role does
      ansible.builtin.include_role:
        name: nvidia_driver
        tasks_from: reboot
"""
SAY_TASK = "Say that a reboot is still needed"


def reboot_message(tmp_path: Path, agent_status: dict[str, Any] | None, **extra: Any) -> str:
    """The role's "reboot is still needed" message after the driver changed, with this agent status."""
    agent = tmp_path / "nomadrig-agent"
    if agent_status is None:
        agent.write_text("#!/bin/sh\nexit 127\n")  # the agent is not installed yet (first apply)
    else:
        agent.write_text(f"#!/bin/sh\ncat <<'EOF'\n{json.dumps(agent_status)}\nEOF\n")
    agent.chmod(0o755)
    playbook = tmp_path / "reboot.yml"
    playbook.write_text(PLAYBOOK)
    variables = {
        "__nvidia_driver_nouveau_blacklist": {"changed": True},  # a change that needs the reboot
        "__nvidia_driver_loaded_branch": "",
        "nvidia_driver_branch": "580",
        "tower_facts_in_container": False,
        "nvidia_driver_allow_reboot": True,
        "nvidia_driver_agent_command": str(agent),
        "ansible_python_interpreter": sys.executable,
        **extra,
    }
    env = {**os.environ, "ANSIBLE_ROLES_PATH": str(REPO / "roles"), "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCALHOST_WARNING": "false", "ANSIBLE_RETRY_FILES_ENABLED": "false"}
    done = subprocess.run([ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", str(playbook),
                           "-e", json.dumps(variables)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    for play in report["plays"]:
        for task in play["tasks"]:
            if task["task"]["name"].endswith(SAY_TASK):
                return task["hosts"]["localhost"].get("msg", "")
    raise AssertionError(f"no {SAY_TASK!r} task ran:\n{done.stdout[-3000:]}")


def test_a_busy_tower_is_not_rebooted_and_the_run_says_why_and_what_to_do(tmp_path: Path) -> None:
    busy = {"idle": False, "reasons": ["GPU 0 busy: python (pid 4242) of ada", "1 user logged in (ada)"]}
    message = reboot_message(tmp_path, busy)
    assert message.startswith("NOTE: A reboot is needed to load NVIDIA driver 580, and was not done:"), message
    assert "the idle agent says the tower is busy (GPU 0 busy: python (pid 4242) of ada; 1 user logged in" in message
    assert "Run `nomadrig tower apply` again when it is idle" in message


@pytest.mark.parametrize("status", [{"idle": True, "reasons": ["no GPU process for 45 min"]}, None],
                         ids=["agent says idle", "no agent yet"])
def test_an_idle_tower_or_one_without_the_agent_is_not_held_back(tmp_path: Path, status: dict | None) -> None:
    # Over this local connection the only remaining reason is the local connection itself.
    message = reboot_message(tmp_path, status)
    assert "the connection is local" in message and "idle agent" not in message, message


def test_the_idle_check_can_be_turned_off(tmp_path: Path) -> None:
    message = reboot_message(tmp_path, {"idle": False, "reasons": ["GPU 0 busy"]},
                             nvidia_driver_reboot_only_when_idle=False)
    assert "the connection is local" in message, message
