"""Where the engine keeps things and what it tells the Pulumi CLI: home, work dir, backend, secrets.

Kept apart from `engine.py` because none of it needs Pulumi: it is plain path
and environment logic, decided once per command, and tested without a CLI.

- home: ``~/.nomadrig`` (``NOMADRIG_HOME`` overrides it, for tests and for
  people who keep dotfiles elsewhere);
- work dir: ``<home>/work/<team>/``, fixed, so ``Pulumi.yaml`` and the
  per-stack settings files are found again by the next command;
- backend: the team file's ``state.backend_url``; the default
  ``file://~/.nomadrig/state`` follows ``NOMADRIG_HOME`` and is created;
- secrets: the passphrase provider, from ``NOMADRIG_PASSPHRASE`` or from a
  0600 file generated once (losing it makes the state's secrets unreadable,
  hence the warning to back it up).
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .config import DEFAULT_BACKEND
from .errors import CloudError

PROJECT_NAME = "nomadrig"
SECRETS_PROVIDER = "passphrase"
INSTALL_URL = "https://www.pulumi.com/docs/install/"
HOME_ENV = "NOMADRIG_HOME"
PASSPHRASE_ENV = "NOMADRIG_PASSPHRASE"
PULUMI_ROOT_ENV = "NOMADRIG_PULUMI_ROOT"  # a directory holding bin/pulumi: the tests' double, or .cache/engine
POLICY_PACK_ENV = "NOMADRIG_POLICY_PACK"

Warn = Callable[[str], None]


def nomadrig_home() -> Path:
    """``$NOMADRIG_HOME`` or ``~/.nomadrig``: everything local the engine writes lives below it."""
    override = os.environ.get(HOME_ENV)
    return Path(override).expanduser() if override else Path.home() / ".nomadrig"


def work_dir(home: Path, team: str) -> Path:
    """The fixed Pulumi work dir of a team (Pulumi.yaml and Pulumi.<stack>.yaml live here)."""
    path = home / "work" / team
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def resolve_backend_url(configured: str, home: Path) -> str:
    """The backend URL the CLI gets; local directories are made absolute and created.

    The team file's default names ``~/.nomadrig/state``; it follows
    ``NOMADRIG_HOME`` so a test or a second checkout never writes into the
    user's real state. Other ``file://`` URLs get ``~`` expanded. Remote
    backends (s3, gs, azblob, Pulumi Cloud) pass through untouched.
    """
    if configured == DEFAULT_BACKEND:
        local = home / "state"
    elif configured.startswith("file://"):
        local = Path(os.path.expanduser(configured[len("file://"):]))
    else:
        return configured
    if not local.is_absolute():
        raise CloudError(f"state.backend_url {configured!r} is a relative path.\n"
                         "  Use an absolute file:// URL, e.g. file://~/.nomadrig/state.")
    local.mkdir(parents=True, exist_ok=True, mode=0o700)
    return f"file://{local}"


def passphrase_env(home: Path, warn: Warn) -> dict[str, str]:
    """How the CLI gets the secrets passphrase: the env var, or a file generated once.

    ``NOMADRIG_PASSPHRASE`` wins (CI, shared teams). Otherwise
    ``<home>/passphrase`` (0600) is created on first use with a random value;
    the warning tells the user to back it up, because the state's secrets
    cannot be decrypted without it.
    """
    given = os.environ.get(PASSPHRASE_ENV)
    if given:
        return {"PULUMI_CONFIG_PASSPHRASE": given}
    path = home / "passphrase"
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
        warn(f"generated the state passphrase in {path} (mode 0600). Back it up: without it the "
             "secrets in your Pulumi state cannot be decrypted. Set NOMADRIG_PASSPHRASE to use your own.")
    elif path.stat().st_mode & 0o077:
        warn(f"{path} is readable by other users; run: chmod 600 {path}")
    return {"PULUMI_CONFIG_PASSPHRASE_FILE": str(path)}


def repo_root() -> Path:
    """The checkout this package runs from (policypack/ lives beside nomadrig/)."""
    return Path(__file__).resolve().parent.parent


def policy_pack_dir() -> Path:
    """The CrossGuard pack attached to every preview and up, as an absolute path.

    Refusing when it is missing is deliberate: running `up` without the policy
    would silently drop the resource checks the team relies on.
    """
    override = os.environ.get(POLICY_PACK_ENV)
    path = Path(override).resolve() if override else repo_root() / "policypack"
    if not (path / "PulumiPolicy.yaml").is_file():
        raise CloudError(f"the policy pack is missing: {path}/PulumiPolicy.yaml not found.\n"
                         "  Run nomadrig from a checkout of the repository (policypack/ beside nomadrig/), "
                         f"or set {POLICY_PACK_ENV} to the pack's directory.")
    return path


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

    @classmethod
    def for_team(cls, team: str, backend_url: str, warn: Warn) -> EngineSettings:
        home = nomadrig_home()
        backend = resolve_backend_url(backend_url, home)
        env = {
            "PULUMI_BACKEND_URL": backend,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            # Python processes the CLI starts (the tower's dynamic provider) must find this
            # interpreter's packages even when nomadrig runs from an unactivated venv.
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
            **passphrase_env(home, warn),
        }
        return cls(team=team, home=home, work_dir=work_dir(home, team), backend_url=backend, env=env)
