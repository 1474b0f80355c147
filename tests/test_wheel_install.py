"""The built wheel, installed into a fresh venv outside the checkout, does nomadrig's main jobs from an empty folder.

What a user gets from `pipx install nomadrig-*.whl`: no checkout beside the package, only a team file in the
current folder. The wheel is built from a copy of the working tree (the files a build reads), offline
(`--no-build-isolation`, with the setuptools the test extras install), and installed with pip into a new
venv made with `--without-pip`. Its dependencies come from the test interpreter's site-packages through a
`.pth` line, which adds that folder to the import path without running the `.pth` files in it, so the
checkout's editable install is not loaded: `nomadrig` is the wheel's own copy, which each test asserts.

The commands run as subprocesses of the installed `nomadrig` script, with NOMADRIG_HOME in a temporary
folder; the tower check runs against the session's converged container (marked `container`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from nomadrig import paths
from tests.fake_pulumi.real import PASSPHRASE, built_engine_root

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "team.yaml"
#: What `pip wheel .` reads from the tree: the build files, the package, the mapped folders, the readme.
BUILD_INPUTS = ("setup.py", "pyproject.toml", "README.md", "nomadrig", "stacks", *paths.SHIPPED_FOLDERS)
CLI_TIMEOUT_S = 900  # a guard against a hang on a loaded machine, not a measurement


def repository_files(folder: Path) -> set[str]:
    """The files a folder holds as a user's clone has them: no bytecode caches, no symbolic links."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")
            if p.is_file() and not p.is_symlink() and "__pycache__" not in p.parts and p.suffix != ".pyc"
            and not any(part.startswith(".") for part in p.relative_to(folder).parts)}


def can_build_offline() -> bool:
    """Whether this interpreter has the setuptools pyproject.toml asks for (the test extras install it)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return int(version("setuptools").split(".")[0]) >= 77
    except PackageNotFoundError:
        return False


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the working tree (so the build leaves nothing in the checkout)."""
    source = tmp_path_factory.mktemp("source")
    for name in BUILD_INPUTS:
        origin = REPO / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))
        else:
            shutil.copy2(origin, source / name)
    out = tmp_path_factory.mktemp("dist")
    isolation = ["--no-build-isolation"] if can_build_offline() else []  # else pip fetches setuptools, as for -e .
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", *isolation, "-w", str(out),
                           "-q"], capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False,
                          env=dict(os.environ, PIP_NO_INDEX="1") if isolation else None)
    assert done.returncode == 0, done.stdout + done.stderr
    (built,) = out.glob("nomadrig-*.whl")
    return built


@dataclass(frozen=True)
class Installed:
    """A venv outside the checkout with the wheel installed, and an empty folder holding only a team file."""

    venv: Path
    workdir: Path
    home: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NOMADRIG_", "PYTHON"))}
        return dict(env, NOMADRIG_HOME=str(self.home), NOMADRIG_CATALOG=str(self.home / "no-refreshed-catalog"),
                    PATH=os.pathsep.join([str(self.venv / "bin"), env.get("PATH", "")]))

    def start(self, *args: str) -> subprocess.Popen[str]:
        """The installed `nomadrig` script, started in the empty folder with no terminal (as in CI)."""
        return subprocess.Popen([str(self.venv / "bin" / "nomadrig"), *args], cwd=self.workdir, env=self.env(),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(process: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    """Wait for a started command; its exit code and output."""
    stdout, stderr = process.communicate(timeout=CLI_TIMEOUT_S)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def link_dependency_scripts(venv: Path, names: tuple[str, ...]) -> None:
    """The dependencies' console scripts the wheel runs (ansible-playbook), as pip writes them: on the venv's Python."""
    for name in names:
        script = Path(sysconfig.get_path("scripts"), name).read_text().split("\n", 1)[1]
        target = venv / "bin" / name
        target.write_text(f"#!{venv / 'bin' / 'python'}\n{script}")
        target.chmod(0o755)


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("installed")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    purelib = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # The dependencies (pulumi, ansible, ...): this interpreter's site-packages, as a plain path entry.
    Path(purelib, "nomadrig-test-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    link_dependency_scripts(venv, ("ansible", "ansible-playbook"))
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                           "--no-deps", "--no-index", str(wheel)], capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    workdir = root / "empty"
    workdir.mkdir()
    shutil.copy(EXAMPLE, workdir / "team.yaml")
    return Installed(venv=venv, workdir=workdir, home=root / "home")


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
    return result


# -- the wheel's file list ----------------------------------------------------------------------


def test_the_wheel_installs_only_the_nomadrig_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"nomadrig", wheel.name.split("-py3")[0] + ".dist-info"}
    assert [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pyo"))] == []
    assert "nomadrig/stacks/__main__.py" in names, "stacks/ installs as nomadrig.stacks"


@pytest.mark.parametrize("folder", paths.SHIPPED_FOLDERS)
def test_the_wheel_carries_each_top_level_folder_file_for_file(wheel, folder):
    prefix = f"{paths.SHIPPED_DIR.name}/{folder}/"
    shipped = {n.split(prefix, 1)[1] for n in zipfile.ZipFile(wheel).namelist() if n.startswith(f"nomadrig/{prefix}")}
    assert shipped == repository_files(REPO / folder)


def test_the_wheel_carries_the_agent_sources_and_units_and_the_catalogs(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for item in ("agent/units/nomadrig-agent", "agent/units/nomadrig-agent.timer", "agent/__main__.py",
                 "catalog/data/prices.csv", "compat/data/gpus.csv", "py.typed"):
        assert f"nomadrig/{item}" in names


# -- the installed wheel at work -------------------------------------------------------------------


def test_the_installed_nomadrig_runs_from_the_venv_and_finds_its_folders_there(installed):
    probe = ("import nomadrig, nomadrig.paths as p, nomadrig.stacks as s; "
             "print(nomadrig.__file__); print(s.__file__); print(p.project_root()); print(p.policy_pack_dir())")
    out = subprocess.run([str(installed.python), "-c", probe], cwd=installed.workdir, env=installed.env(),
                         capture_output=True, text=True, check=True).stdout.split()
    for shown in out:
        assert Path(shown).is_relative_to(installed.venv), f"{shown} is not the wheel's own file"
    assert Path(out[2]).name == paths.SHIPPED_DIR.name


def test_validate_plan_policy_cost_and_advise_work_from_a_folder_holding_only_the_team_file(installed):
    commands = {"validate": ["validate"], "plan": ["plan", "--json"], "policy": ["policy", "list", "--json"],
                "cost": ["cost", "--json"], "advise": ["advise"]}
    started = {name: installed.start(*args, "--team", "team.yaml") for name, args in commands.items()}  # at once
    done = {name: ok(finished(process)) for name, process in started.items()}

    assert done["validate"].stdout.startswith("team.yaml: ok: team vision-lab")
    assert json.loads(done["plan"].stdout)["mandatory_violations"] == 0, done["plan"].stdout[-2000:]
    assert {"SEC-002", "COST-001"} <= {rule["id"] for rule in json.loads(done["policy"].stdout)}
    cost = json.loads(done["cost"].stdout)
    assert cost["total_usd"] > 0 and {b["nomad"] for b in cost["boxes"]} == {"ada", "grace", "linus"}
    assert "team file: team.yaml" in done["advise"].stderr
    assert sorted(p.name for p in installed.workdir.iterdir()) == ["team.yaml"], "read-only commands wrote here"
    assert not (installed.home / "passphrase").exists(), "read-only commands created a passphrase"


def test_tower_check_runs_the_shipped_playbook_from_the_installed_wheel(installed, tmp_path):
    """Without a tower to reach: the run starts from the wheel's playbooks and roles and reports the tower unreachable."""
    import yaml

    workdir = tmp_path / "unreachable"
    workdir.mkdir()
    team = yaml.safe_load(EXAMPLE.read_text())
    team["towers"][0].update(address="127.0.0.1", ssh_port=1)  # port 1 on loopback refuses at once
    (workdir / "team.yaml").write_text(yaml.safe_dump(team, sort_keys=False))
    result = subprocess.run([str(installed.venv / "bin" / "nomadrig"), "tower", "check", "basement", "--json",
                             "--team", "team.yaml"], cwd=workdir, env=installed.env(), stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False)

    assert result.returncode == 3, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["unreachable"] == 1 and report["error"]["code"] == 3, report
    run_dir = Path(report["run_dir"])
    assert run_dir.is_relative_to(installed.home / "runs")
    extravars = yaml.safe_load((run_dir / "env" / "extravars").read_text().replace("!unsafe ", ""))
    assert Path(extravars["agent_source_dir"]).is_relative_to(installed.venv), "the agent role copies the wheel's agent"
    command = json.loads(next(run_dir.glob("artifacts/*/command")).read_text())
    assert Path(command["env"]["ANSIBLE_ROLES_PATH"]).is_relative_to(installed.venv)
    assert any(Path(arg).is_relative_to(installed.venv) for arg in command["command"] if arg.endswith("tower.yml"))


@pytest.mark.container
def test_tower_check_of_the_converged_container_works_from_the_installed_wheel(installed, converged_tower, tmp_path):
    import yaml

    workdir = tmp_path / "tower"
    workdir.mkdir()
    team = converged_tower.team.model_dump(mode="json", exclude_defaults=True)
    (workdir / "team.yaml").write_text(yaml.safe_dump(team, sort_keys=False))
    args = ["tower", "check", converged_tower.team.towers[0].name, "--team", "team.yaml",
            "--ssh-key", str(converged_tower.ssh_key), "--json"]
    for key, value in converged_tower.options.overrides.items():
        args += ["-e", f"{key}={json.dumps(value)}"]  # JSON is YAML: -e takes it as written
    env = installed.env()
    # Host keys are checked as for a user: the container's key (new on every boot) is known from a file of the
    # test's own, not from root's known_hosts (Mitogen's strategy would override a relaxed StrictHostKeyChecking).
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(converged_tower.container.known_hosts_line())
    env["ANSIBLE_SSH_COMMON_ARGS"] = f"-o UserKnownHostsFile={known_hosts}"
    result = subprocess.run([str(installed.venv / "bin" / "nomadrig"), *args], cwd=workdir, env=env,
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False)

    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    report = json.loads(result.stdout)
    assert report["status"] == "successful" and report["failed"] == 0 and report["mode"] == "check"
    assert Path(report["run_dir"]).is_relative_to(installed.home / "runs"), "runs go under NOMADRIG_HOME"
    assert not (installed.home / "passphrase").exists()


PACK_PREVIEW = '''
"""Preview, through the real CLI, a stack holding an EC2 instance without IMDSv2: the installed pack must deny it."""
import pulumi
from nomadrig.team.load import load_team
from nomadrig.engine import Engine
from nomadrig.errors import CloudError
from nomadrig.spec import box_spec


class LookAlike(pulumi.ComponentResource):
    """A component with an EC2 instance's type token and inputs: what the pack judges, and no cloud."""

    def __init__(self) -> None:
        super().__init__("aws:ec2/instance:Instance", "box", {"metadataOptions": {"httpTokens": "optional"}})
        self.register_outputs({})


class Programs:
    def network(self, spec):
        return LookAlike


team = load_team("team.yaml")
try:
    Engine(team, programs=Programs()).preview_box(box_spec(team, "ada"))
    print("previewed without a denial")
except CloudError as error:
    print(error)
'''


def test_preview_attaches_the_installed_policy_pack_and_the_real_engine_runs_it(installed):

    env = dict(installed.env(), NOMADRIG_PULUMI_ROOT=str(built_engine_root()), NOMADRIG_PASSPHRASE=PASSPHRASE,
               PULUMI_HOME=str(installed.home / "pulumi-home"))
    for name in ("PULUMI_BACKEND_URL", "PULUMI_ACCESS_TOKEN", "PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE"):
        env.pop(name, None)
    done = subprocess.run([str(installed.python), "-c", PACK_PREVIEW], cwd=installed.workdir, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False)

    assert done.returncode == 0, done.stderr[-4000:]
    assert "pulumi preview failed" in done.stdout, done.stdout[-4000:] + done.stderr[-2000:]
    assert "mandatory nomadrig/SEC-002 (box)" in done.stdout, done.stdout[-4000:]
