"""What the engine tells the Pulumi CLI: work dir, backend, secrets, the CLI and the policy pack's Python.

Kept apart from `operations.py` because none of it needs Pulumi: it is plain path
and environment logic, decided once per command, and tested without a CLI.
Where things live is `nomadrig.paths`' answer; this module decides what the
CLI gets:

- work dir: ``<home>/work/<team>/``, fixed, so ``Pulumi.yaml`` and the
  per-stack settings files are found again by the next command;
- backend: the team file's ``state.backend_url``; the default
  ``file://~/.nomadrig/state`` follows ``NOMADRIG_HOME`` and is created;
- secrets: the passphrase provider, from ``NOMADRIG_PASSPHRASE`` or from a
  0600 file generated once, by the first command that writes state
  (`EngineSettings.ensure_passphrase`); a read-only command never creates it;
- the policy pack's Python: the interpreter nomadrig runs on, so the pack
  imports this very nomadrig, installed or checked out.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from nomadrig import paths
from nomadrig.errors import CloudError
from nomadrig.paths import HOME_ENV, POLICY_PACK_ENV, nomadrig_home, policy_pack_dir

__all__ = ["HOME_ENV", "POLICY_PACK_ENV", "EngineSettings", "missing_cli_error", "nomadrig_home", "passphrase_env",
           "policy_pack_dir", "pulumi_root", "resolve_backend_url", "work_dir"]

PROJECT_NAME = "nomadrig"
SECRETS_PROVIDER = "passphrase"
INSTALL_URL = "https://www.pulumi.com/docs/install/"
PASSPHRASE_ENV = "NOMADRIG_PASSPHRASE"
PASSPHRASE_FILE_VAR = "PULUMI_CONFIG_PASSPHRASE_FILE"
PULUMI_ROOT_ENV = "NOMADRIG_PULUMI_ROOT"  # a directory holding bin/pulumi: the tests' double, or .cache/engine

Warn = Callable[[str], None]


def work_dir(team: str) -> Path:
    """The fixed Pulumi work dir of a team (Pulumi.yaml and Pulumi.<stack>.yaml live here), created 0700.

    Created by every engine command, read-only ones too: the Automation API
    writes Pulumi.yaml into it before any CLI call. It holds no secret.
    """
    path = paths.work_dir(team)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def resolve_backend_url(configured: str) -> str:
    """The backend URL the CLI gets; local directories are made absolute and created.

    The team file's default names ``~/.nomadrig/state``, which follows
    ``NOMADRIG_HOME`` (see `paths.local_path_of_url`) so a test or a second
    setup never writes into the user's real state. Other ``file://`` URLs get
    ``~`` expanded. Remote backends (s3, gs, azblob, Pulumi Cloud) pass
    through untouched.
    """
    local = paths.local_path_of_url(configured)
    if local is None:
        return configured
    if not local.is_absolute():
        raise CloudError(f"state.backend_url {configured!r} is a relative path.\n"
                         "  Use an absolute file:// URL, e.g. file://~/.nomadrig/state.")
    local.mkdir(parents=True, exist_ok=True, mode=0o700)
    return f"file://{local}"


def passphrase_env(warn: Warn) -> dict[str, str]:
    """How the CLI gets the secrets passphrase: ``NOMADRIG_PASSPHRASE``, else the file under the home.

    The variable wins (CI, shared teams). Otherwise the CLI reads
    ``<home>/passphrase``, which this does not create: a read-only command
    leaves no trace, where no stack exists the CLI never reads the file, and
    where one does, the CLI's error names the missing file. Commands that
    write state create it first (`EngineSettings.ensure_passphrase`).
    """
    given = os.environ.get(PASSPHRASE_ENV)
    if given:
        return {"PULUMI_CONFIG_PASSPHRASE": given}
    path = paths.passphrase_file()
    if path.exists() and path.stat().st_mode & 0o077:
        warn(f"{path} is readable by other users; run: chmod 600 {path}")
    return {PASSPHRASE_FILE_VAR: str(path)}


def _generate_passphrase(path: Path) -> bool:
    """Write a random passphrase to a new 0600 file; False when another command made it first (O_EXCL)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(32) + "\n")
    return True


def pulumi_root() -> Path | None:
    """The directory holding ``bin/pulumi`` to run, or None to run ``pulumi`` from PATH.

    ``NOMADRIG_PULUMI_ROOT`` wins (the tests' CLI double, or ``.cache/engine`` where
    scripts/build-engine.sh built the CLI from its Go modules). Otherwise PATH, then
    the installer's default ``~/.pulumi``. Raises the install hint when no CLI
    exists anywhere, before the Automation API fails with a bare
    FileNotFoundError.
    """
    override = os.environ.get(PULUMI_ROOT_ENV)
    if override:
        return Path(override)
    found = shutil.which("pulumi")
    if found:
        binary = Path(found)
        return binary.parent.parent if binary.parent.name == "bin" else None
    installed = Path.home() / ".pulumi"
    if (installed / "bin" / "pulumi").exists():
        return installed
    raise missing_cli_error()


def missing_cli_error() -> CloudError:
    return CloudError("the Pulumi CLI is not installed (no `pulumi` on PATH or in ~/.pulumi/bin).\n"
                      f"  Install it: {INSTALL_URL} (e.g. curl -fsSL https://get.pulumi.com | sh), "
                      "then run the command again.")


@dataclass(frozen=True)
class EngineSettings:
    """Everything about the local environment one engine run needs, resolved once."""

    team: str
    home: Path
    work_dir: Path
    backend_url: str
    env: dict[str, str] = field(default_factory=dict)
    warn: Warn = field(default=lambda _text: None, repr=False, compare=False)

    @classmethod
    def for_team(cls, team: str, backend_url: str, warn: Warn) -> EngineSettings:
        """A team's settings: creates the work dir and a local backend's folder, never the passphrase."""
        backend = resolve_backend_url(backend_url)
        env = {
            "PULUMI_BACKEND_URL": backend,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            # Python processes the CLI starts (the tower's dynamic provider) must find this
            # interpreter's packages even when nomadrig runs from an unactivated venv.
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
            # The policy pack runs on this interpreter too (its PulumiPolicy.yaml names no virtualenv),
            # so it imports the nomadrig that runs the command, wherever that is installed.
            "PULUMI_PYTHON_CMD": sys.executable,
            **passphrase_env(warn),
        }
        return cls(team=team, home=nomadrig_home(), work_dir=work_dir(team), backend_url=backend, env=env, warn=warn)

    def ensure_passphrase(self) -> None:
        """Generate the passphrase file the CLI is pointed at, when there is none: call before writing state.

        Creating a stack (``up``, or ``preview`` of a stack that does not exist
        yet) writes its encryption salt, which needs a passphrase. The warning
        says to back it up: the state's secrets cannot be decrypted without it.
        """
        given = self.env.get(PASSPHRASE_FILE_VAR)
        if given and _generate_passphrase(Path(given)):
            self.warn(f"generated the state passphrase in {given} (mode 0600). Back it up: without it the "
                      "secrets in your Pulumi state cannot be decrypted. Set NOMADRIG_PASSPHRASE to use your own.")
