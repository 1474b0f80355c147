"""Helpers around the Pulumi CLI test double in ``bin/pulumi``.

`FakePulumi.install` points the engine at the double (``NOMADRIG_PULUMI_ROOT``),
gives it a private directory for its log and state, and isolates nomadrig's
home, so a test sees exactly the commands the engine ran.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent


class FakePulumi:
    def __init__(self, directory: Path, home: Path, policy_pack: Path) -> None:
        self.dir = directory
        self.home = home
        self.policy_pack = policy_pack

    @classmethod
    def install(cls, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *, version: str | None = None) -> FakePulumi:
        directory = tmp_path / "fake-pulumi"
        directory.mkdir()
        home = tmp_path / "nomadrig-home"
        pack = tmp_path / "checkout" / "policypack"
        pack.mkdir(parents=True)
        (pack / "PulumiPolicy.yaml").write_text("runtime: python\nversion: 0.1.0\n")
        monkeypatch.setenv("FAKE_PULUMI_DIR", str(directory))
        monkeypatch.setenv("NOMADRIG_PULUMI_ROOT", str(ROOT))
        monkeypatch.setenv("NOMADRIG_HOME", str(home))
        monkeypatch.setenv("NOMADRIG_POLICY_PACK", str(pack))
        monkeypatch.delenv("NOMADRIG_PASSPHRASE", raising=False)
        monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)
        monkeypatch.delenv("PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK", raising=False)
        # The double is a Python script run through `env python3`: make that this interpreter.
        monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{_env_path()}")
        if version:
            monkeypatch.setenv("FAKE_PULUMI_VERSION", version)
        return cls(directory, home, pack)

    def calls(self) -> list[dict[str, Any]]:
        log = self.dir / "log.jsonl"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]

    def argvs(self) -> list[list[str]]:
        """Each invocation's arguments, without the `--non-interactive` the SDK adds to all."""
        return [[a for a in c["argv"] if a != "--non-interactive"] for c in self.calls()]

    def calls_of(self, *prefix: str) -> list[dict[str, Any]]:
        return [
            c for c in self.calls() if [a for a in c["argv"] if a != "--non-interactive"][: len(prefix)] == list(prefix)
        ]

    def imports(self) -> list[dict[str, Any]]:
        """What each `pulumi import` was asked to import (its --file is a temp file the SDK deletes)."""
        path = self.dir / "imports.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def scenario(self, **data: Any) -> None:
        (self.dir / "scenario.json").write_text(json.dumps(data))

    def state(self) -> dict[str, Any]:
        path = self.dir / "state.json"
        return json.loads(path.read_text()) if path.exists() else {"stacks": {}}

    def clear_log(self) -> None:
        (self.dir / "log.jsonl").unlink(missing_ok=True)


def _env_path() -> str:
    import os

    return os.environ.get("PATH", "/usr/bin:/bin")


def flag_value(argv: list[str], flag: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
    return None


def spawn_in_session(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], terminal: bool = False
                     ) -> tuple[subprocess.Popen, int | None]:
    """Start a nomadrig process in a session of its own, as a shell starts a foreground job.

    With `terminal`, a pty becomes its controlling terminal and its master end is returned:
    writing b"\\x03" to it is a user's Ctrl-C, which the terminal sends to the whole
    foreground group (nomadrig and the Pulumi CLI it started), as a real terminal does.
    """
    master = slave = None
    extra: dict[str, Any] = {}
    if terminal:
        import fcntl
        import pty
        import termios

        master, slave = pty.openpty()
        extra = {"stdin": slave, "preexec_fn": lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0)}
    proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, cwd=cwd, env=dict(env), **extra)
    if slave is not None:
        os.close(slave)
    return proc, master
