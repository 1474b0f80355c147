"""One naming rule for the roles' variables, so that a reader can tell a role's contract from its workings.

A role's inputs are `<role>_*` (declared in meta/argument_specs.yml, defaulted in defaults/main.yml; the README's
variable table is generated from them). Every register, set_fact and vars/ entry a role keeps for itself is
`__<role>_*`. The only exceptions are the facts in PUBLISHED, which a role sets for other roles, for nomadrig's
Python or for the tests; each is in its role README's "What it sets" table.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

#: Published facts and vars/ entries, with who reads them outside the role. Keep it short: a name goes here
#: only when something outside its role reads it.
PUBLISHED: dict[str, str] = {
    "tower_facts_in_container": "base, preflight, nvidia_driver, gpu_containers and remote_access leave a container's "
                                "kernel, firmware and disks to the host",
    "tower_facts_packages": "every role that installs packages asks apt only for the missing ones",
    "tower_facts_secure_boot": "preflight and nvidia_driver act on one reading of Secure Boot",
    "tower_facts_container_types": "preflight decides an observed virtualization type by the same list",
    "tower_facts_os_vars_files": "cuda and nvidia_driver load their per-OS vars by the same list of names",
    "cuda_repo_added": "cuda and nvidia_driver both include cuda_repo; the second include skips the work",
    "cuda_repo_pending": "cuda and nvidia_driver skip their package lookups where a dry run could not add the source",
    "cuda_repo_release_keys": "tests hold it against the GPU matrix and replace it to model an unpublished release",
    "nvidia_driver_reboot_needed": "verify tells a driver that waits for a reboot from a missing GPU",
    "nvidia_driver_reboot_blocker": "verify says why the driver role did not reboot",
    "remote_access_tower_public_key": "nomadrig/towers/runner.py takes the tower's key from the run's events",
}

#: Where a published name may be read: everything but the role that sets it (and this file).
READERS = ("roles", "nomadrig", "stacks", "playbooks", "templates", "tests")

SET_FACT = ("ansible.builtin.set_fact", "ansible.legacy.set_fact", "set_fact")


def _tasks(items: Any) -> Iterator[dict[str, Any]]:
    """Every task of a task list, with those inside block, rescue and always."""
    for task in items or []:
        if not isinstance(task, dict):
            continue
        yield task
        for section in ("block", "rescue", "always"):
            yield from _tasks(task.get(section))


def _task_files(role_dir: Path) -> list[Path]:
    return sorted([*role_dir.glob("tasks/*.yml"), *role_dir.glob("handlers/*.yml")])


def _assigned(role_dir: Path) -> Iterator[tuple[Path, str, str, str]]:
    """(file, task name, kind, variable) for every register, set_fact key and vars/ entry of a role."""
    for path in _task_files(role_dir):
        for task in _tasks(yaml.safe_load(path.read_text())):
            name = task.get("name", "(unnamed)")
            if isinstance(task.get("register"), str):
                yield path, name, "register", task["register"]
            for module in SET_FACT:
                if isinstance(task.get(module), dict):
                    for key in task[module]:
                        if key != "cacheable":
                            yield path, name, "set_fact", key
    for path in sorted(role_dir.glob("vars/*.yml")):
        for key in yaml.safe_load(path.read_text()) or {}:
            yield path, "", "vars entry", key


def _owner(variable: str, roles: Path) -> str:
    """The role whose prefix a public name carries (the longest: cuda_repo_added is cuda_repo's, not cuda's)."""
    return max((p.name for p in roles.iterdir() if variable.startswith(p.name + "_")), key=len, default="")


def misnamed(roles: Path) -> list[str]:
    """One line per register, set_fact key or vars/ entry that breaks the rule, naming file, task and variable."""
    problems = []
    for role_dir in sorted(p for p in roles.iterdir() if p.is_dir()):
        role = role_dir.name
        for path, task, kind, variable in _assigned(role_dir):
            if variable.startswith(f"__{role}_"):
                continue
            if variable in PUBLISHED and _owner(variable, roles) == role:
                continue
            where = f"{path.relative_to(roles.parent)}" + (f": task {task!r}" if task else "")
            problems.append(f"{where}: {kind} {variable} is internal to {role}; name it __{role}_"
                            f"{variable.removeprefix(role + '_').lstrip('_')}, or add it to PUBLISHED with its reader")
    return problems


def _private_names(text: str) -> set[str]:
    """Names that start with two underscores; not a pattern such as `__<role>_*` in prose."""
    return set(re.findall(r"(?<![A-Za-z0-9_])__[a-z][a-z0-9_]*(?![A-Za-z0-9_*])", text))


def unset_or_foreign(roles: Path) -> list[str]:
    """Private names a role mentions but never sets, and other roles' private names it reaches into."""
    problems = []
    for role_dir in sorted(p for p in roles.iterdir() if p.is_dir()):
        role = role_dir.name
        defined = {variable for _, _, _, variable in _assigned(role_dir)}
        for path in _task_files(role_dir):
            for task in _tasks(yaml.safe_load(path.read_text())):
                defined |= set(task.get("vars") or {})
                defined.add((task.get("loop_control") or {}).get("loop_var", ""))
        files = sorted(p for p in role_dir.rglob("*") if p.suffix in (".yml", ".j2", ".md") and p.is_file())
        for path in files:
            for name in sorted(_private_names(path.read_text())):
                if not name.startswith(f"__{role}_"):
                    problems.append(f"{path.relative_to(roles.parent)}: {name} is not {role}'s (private names are "
                                    "read only in their own role)")
                elif name not in defined:
                    problems.append(f"{path.relative_to(roles.parent)}: {name} is read but never set in {role}")
    return problems


def test_every_register_set_fact_and_vars_entry_is_private_or_published() -> None:
    problems = misnamed(REPO / "roles")
    assert not problems, "\n".join(problems)


def test_every_private_name_a_role_reads_is_set_in_that_role() -> None:
    problems = unset_or_foreign(REPO / "roles")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("fact", sorted(PUBLISHED))
def test_a_published_fact_is_set_by_its_role_read_elsewhere_and_in_its_readme(fact: str) -> None:
    roles = REPO / "roles"
    role = _owner(fact, roles)
    assert fact in {variable for _, _, _, variable in _assigned(roles / role)}, f"{role} no longer sets {fact}"
    pattern = re.compile(rf"(?<![A-Za-z0-9_]){fact}(?![A-Za-z0-9_])")
    readers = sorted(
        str(path.relative_to(REPO)) for top in READERS for path in (REPO / top).rglob("*")
        if path.is_file() and path.suffix in (".yml", ".yaml", ".j2", ".py")
        and not path.is_relative_to(roles / role) and path != Path(__file__).resolve()
        and pattern.search(path.read_text(errors="replace")))
    assert readers, f"nothing outside {role} reads {fact}: make it __{role}_* and drop it from PUBLISHED"
    sets = (roles / role / "README.md").read_text().split("## What it sets")
    assert len(sets) == 2 and f"`{fact}`" in sets[1].split("\n## ")[0], f"{role}/README.md: list {fact} in What it sets"


def test_a_public_register_or_vars_entry_added_makes_the_check_fail(tmp_path: Path) -> None:
    roles = tmp_path / "roles"
    shutil.copytree(REPO / "roles", roles)
    assert misnamed(roles) == [] and unset_or_foreign(roles) == []

    tasks_file = roles / "nvidia_driver" / "tasks" / "persistence.yml"
    tasks = yaml.safe_load(tasks_file.read_text())
    tasks.append({"name": "Look at the unit again", "block": [
        {"name": "Read the unit", "ansible.builtin.command": {"argv": ["true"]}, "register": "nvidia_driver_unit_again",
         "changed_when": False}]})
    tasks_file.write_text(yaml.safe_dump(tasks))
    vars_file = roles / "cuda" / "vars" / "Debian.yml"
    vars_file.write_text(vars_file.read_text() + "cuda_debian_extra: 1\n")
    (roles / "verify" / "tasks" / "reboot.yml").write_text(
        (roles / "verify" / "tasks" / "reboot.yml").read_text() + "# reads __nvidia_driver_loaded_branch\n")
    (roles / "cuda" / "templates" / "nomadrig-cuda.sh.j2").write_text(
        (roles / "cuda" / "templates" / "nomadrig-cuda.sh.j2").read_text() + "# {{ __cuda_never_set }}\n")

    assert misnamed(roles) == [
        "roles/cuda/vars/Debian.yml: vars entry cuda_debian_extra is internal to cuda; name it __cuda_debian_extra,"
        " or add it to PUBLISHED with its reader",
        "roles/nvidia_driver/tasks/persistence.yml: task 'Read the unit': register nvidia_driver_unit_again is"
        " internal to nvidia_driver; name it __nvidia_driver_unit_again, or add it to PUBLISHED with its reader",
    ]
    assert unset_or_foreign(roles) == [
        "roles/cuda/templates/nomadrig-cuda.sh.j2: __cuda_never_set is read but never set in cuda",
        "roles/verify/tasks/reboot.yml: __nvidia_driver_loaded_branch is not verify's (private names are read only"
        " in their own role)",
    ]


def test_a_published_fact_set_by_another_role_is_refused(tmp_path: Path) -> None:
    roles = tmp_path / "roles"
    shutil.copytree(REPO / "roles", roles)
    tasks_file = roles / "preflight" / "tasks" / "report.yml"
    tasks = yaml.safe_load(tasks_file.read_text())
    tasks.append({"name": "Decide the container again", "ansible.builtin.set_fact": {"tower_facts_in_container": True}})
    tasks_file.write_text(yaml.safe_dump(tasks))
    [problem] = misnamed(roles)
    assert problem.startswith("roles/preflight/tasks/report.yml: task 'Decide the container again': set_fact "
                              "tower_facts_in_container is internal to preflight"), problem
