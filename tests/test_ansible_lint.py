"""The roles and playbooks pass ansible-lint's production profile.

The production profile is the strictest one: fully qualified module names, task
names that read as sentences, `changed_when` on commands, role-prefixed
variables, argument specs that match the defaults. Keeping it clean is what lets
a team fork the roles and review changes to them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ANSIBLE_LINT = shutil.which("ansible-lint") or str(Path(sys.executable).parent / "ansible-lint")


@pytest.mark.skipif(not Path(ANSIBLE_LINT).exists(), reason="ansible-lint is not installed (pip install ansible-lint)")
def test_roles_and_playbooks_pass_the_production_profile() -> None:
    proc = subprocess.run(
        [ANSIBLE_LINT, "--profile", "production", "--nocolor", "--offline", "roles", "playbooks"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1", "ANSIBLE_NOCOLOR": "1"},
        timeout=600,
        check=False,
    )

    assert proc.returncode == 0, f"ansible-lint failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
