"""The verify role looks for the frameworks where the frameworks role put them.

Runs the real role with ansible-playbook against this machine (read-only: it
stats files and asks nvidia-smi), with the environment somewhere it is not.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ANSIBLE_PLAYBOOK = shutil.which("ansible-playbook") or str(Path(sys.executable).parent / "ansible-playbook")

PLAYBOOK = """\
- name: Run the verify role against this machine
  hosts: all
  gather_facts: false
  roles:
    - verify
"""


def verify_failure(tmp_path: Path, **variables: object) -> str:
    """The message of the task that stopped the role (it must stop: no environment exists there)."""
    playbook = tmp_path / "verify.yml"
    playbook.write_text(PLAYBOOK)
    extra = {"verify_require_gpu": False, "ansible_python_interpreter": sys.executable, **variables}
    env = {**os.environ, "ANSIBLE_ROLES_PATH": str(REPO / "roles"), "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCALHOST_WARNING": "false", "ANSIBLE_RETRY_FILES_ENABLED": "false"}
    done = subprocess.run([ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", str(playbook), "-e", json.dumps(extra)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300, check=False)
    assert done.returncode != 0, done.stdout[-3000:]
    report = json.loads(done.stdout)
    failed = [task["hosts"]["localhost"] for play in report["plays"] for task in play["tasks"]
              if task["hosts"].get("localhost", {}).get("failed")]
    assert failed, done.stdout[-3000:]
    return str(failed[0].get("msg", ""))


def test_verify_follows_the_frameworks_environment(tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere" / "venv"
    message = verify_failure(tmp_path, frameworks_venv=str(moved))
    assert f"No Python environment at {moved}" in message, message


def test_an_explicit_verify_venv_still_wins(tmp_path: Path) -> None:
    chosen = tmp_path / "chosen"
    message = verify_failure(tmp_path, frameworks_venv=str(tmp_path / "other"), verify_venv=str(chosen))
    assert f"No Python environment at {chosen}" in message, message
