"""Every path nomadrig reads or writes: what it ships, and what it keeps under its home.

One module, so that an installed nomadrig and a checkout find the same files
and every command writes below the same ``NOMADRIG_HOME``.

**Shipped files** (``templates/``, ``roles/``, ``playbooks/``, ``policypack/``,
``examples/``) live at the top of the repository, where the design puts them.
A wheel cannot install top-level folders, so setup.py maps them into the
package as ``nomadrig/_project/<folder>``. ``project_root`` answers with
whichever layout this nomadrig runs from: the wheel's ``_project/`` when it
exists, else the checkout beside the package (a clone, or an editable install).

**Local state** lives under ``NOMADRIG_HOME`` (default ``~/.nomadrig``)::

    state/                   the default file:// Pulumi backend (file://~/.nomadrig/state)
    work/<team>/             the team's Pulumi work dir (Pulumi.yaml, stack settings, policy
                             pack config, retained.json: the data volumes `down` kept)
    passphrase               the generated state passphrase (0600), unless NOMADRIG_PASSPHRASE is set
    runs/<stamp>-<tower>/    tower run dirs: inventory, variables, Ansible artefacts, report.json
    catalog/                 the refreshed price catalog (NOMADRIG_CATALOG overrides it)

Nothing here creates a file or folder: the code that writes decides when, so
a read-only command leaves no trace.
"""

from __future__ import annotations

import os
from pathlib import Path

from nomadrig.errors import CloudError

HOME_ENV = "NOMADRIG_HOME"
CATALOG_ENV = "NOMADRIG_CATALOG"
POLICY_PACK_ENV = "NOMADRIG_POLICY_PACK"
#: Where `reap --apply` keeps its lock when the state backend cannot hold one (same as --lock-url).
REAPER_LOCK_ENV = "NOMADRIG_REAPER_LOCK"

#: The package folder (``nomadrig/``), in a checkout or in site-packages.
PACKAGE_DIR = Path(__file__).resolve().parent
#: Where a wheel carries the repository's top-level folders, inside the package (see setup.py).
SHIPPED_DIR = PACKAGE_DIR / "_project"
#: The top-level folders the wheel carries: setup.py ships exactly these.
SHIPPED_FOLDERS = ("templates", "roles", "playbooks", "policypack", "examples")
#: How the team file names nomadrig's home in a ``file://`` backend URL (the default backend is below it).
HOME_IN_URLS = "~/.nomadrig"


# -- shipped files ---------------------------------------------------------------


def project_root() -> Path:
    """The folder that holds roles/, playbooks/, templates/, policypack/ and examples/.

    An installed wheel has them in ``nomadrig/_project/``; a checkout (or an
    editable install of one) has them beside the package.
    """
    return SHIPPED_DIR if SHIPPED_DIR.is_dir() else PACKAGE_DIR.parent


def shipped(folder: str) -> Path:
    """One shipped folder, or an error that says the installation is broken and how to repair it.

    Checked where it is used, so a missing folder is reported by name instead
    of surfacing later as a TemplateNotFound or an Ansible "role not found".
    """
    if folder not in SHIPPED_FOLDERS:
        raise ValueError(f"{folder!r} is not a folder nomadrig ships ({', '.join(SHIPPED_FOLDERS)})")
    path = project_root() / folder
    if not path.is_dir():
        raise CloudError(f"nomadrig's {folder}/ is missing: {path} does not exist, so this installation is "
                         "incomplete.\n  Reinstall nomadrig (pipx reinstall nomadrig, or pip install --force-reinstall "
                         "the wheel), or run it from a full checkout of the repository.")
    return path


def templates_dir() -> Path:
    """Jinja2 templates: the cloud-init user data of a box."""
    return shipped("templates")


def roles_dir() -> Path:
    """The tower's Ansible roles (what ``ANSIBLE_ROLES_PATH`` names)."""
    return shipped("roles")


def playbooks_dir() -> Path:
    """The tower playbooks (``tower.yml``, ``verify.yml``, ``access.yml``)."""
    return shipped("playbooks")


def example_team() -> Path:
    """The example team file that shows every field (``examples/team.yaml``)."""
    return shipped("examples") / "team.yaml"


def policy_pack_dir() -> Path:
    """The CrossGuard pack attached to every preview and up: ``$NOMADRIG_POLICY_PACK``, else the shipped one.

    Refusing when it is missing is deliberate: running `up` without the policy
    would silently drop the resource checks the team relies on.
    """
    override = os.environ.get(POLICY_PACK_ENV)
    path = Path(override).expanduser().resolve() if override else shipped("policypack")
    if not (path / "PulumiPolicy.yaml").is_file():
        where = f"{POLICY_PACK_ENV}={override}" if override else "the policy pack nomadrig ships"
        raise CloudError(f"the policy pack is missing: {path}/PulumiPolicy.yaml not found ({where}).\n"
                         f"  Unset {POLICY_PACK_ENV} to use the shipped pack, or point it at a folder holding "
                         "PulumiPolicy.yaml; reinstall nomadrig if the shipped one is gone.")
    return path


def agent_source_dir() -> Path:
    """The idle agent's package (modules and units/): what cloud-init and the agent role install on a machine."""
    return PACKAGE_DIR / "agent"


# -- under NOMADRIG_HOME -----------------------------------------------------------


def nomadrig_home() -> Path:
    """``$NOMADRIG_HOME`` or ``~/.nomadrig``: everything nomadrig writes on this machine lives below it."""
    override = os.environ.get(HOME_ENV)
    return Path(override).expanduser() if override else Path.home() / ".nomadrig"


def state_dir() -> Path:
    """The default local Pulumi backend (the team file's ``file://~/.nomadrig/state``)."""
    return nomadrig_home() / "state"


def work_dir(team: str) -> Path:
    """A team's fixed Pulumi work dir: Pulumi.yaml and the per-stack settings are found again by the next command."""
    return nomadrig_home() / "work" / team


def retained_volumes_file(team: str) -> Path:
    """The record of data volumes that `down` kept for a team (the only local record of them)."""
    return work_dir(team) / "retained.json"


def passphrase_file() -> Path:
    """The generated state passphrase (0600); losing it makes the state's secrets unreadable."""
    return nomadrig_home() / "passphrase"


def runs_dir() -> Path:
    """Where tower runs keep their private dirs and reports (``<stamp>-<tower>/report.json``)."""
    return nomadrig_home() / "runs"


def refreshed_catalog_dir() -> Path:
    """``$NOMADRIG_CATALOG``, else ``<home>/catalog``: the prices `nomadrig catalog refresh` wrote."""
    override = os.environ.get(CATALOG_ENV)
    return Path(override).expanduser() if override else nomadrig_home() / "catalog"


def local_path_of_url(url: str) -> Path | None:
    """The local folder a ``file://`` URL names, or None for any other URL.

    ``~/.nomadrig`` in the URL means nomadrig's home, so the team file's
    default ``file://~/.nomadrig/state`` follows ``NOMADRIG_HOME`` (a test or
    a second setup never writes into the user's real state); any other ``~``
    is the user's home folder.
    """
    if not url.startswith("file://"):
        return None
    raw = url[len("file://"):].split("?", 1)[0]
    if raw == HOME_IN_URLS or raw.startswith(HOME_IN_URLS + "/"):
        return nomadrig_home() / raw[len(HOME_IN_URLS):].lstrip("/")
    return Path(os.path.expanduser(raw))
