"""One module owns every path: shipped files (checkout or installed wheel) and everything under NOMADRIG_HOME.

Each consumer is asked where it reads or writes, with NOMADRIG_HOME pointed at a temporary folder: the
tower runs, the refreshed catalog, the engine (work dir, state, passphrase) and the tower provider.
The reaper lock's place under the home is tested in test_reaper_lock.py, the installed layout for real
in test_wheel_install.py.
"""

from __future__ import annotations

import ast
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nomadrig import paths
from nomadrig.agent import bundle
from nomadrig.errors import CloudError
from tests.fake_pulumi import FakePulumi

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "team.yaml"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NOMADRIG_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("NOMADRIG_CATALOG", raising=False)
    return tmp_path / "home"


# -- shipped files ---------------------------------------------------------------------------


def test_a_checkout_uses_the_top_level_folders_the_design_names():
    assert not paths.SHIPPED_DIR.exists(), "a checkout has no nomadrig/_project (only the wheel carries one)"
    assert paths.project_root() == REPO
    assert paths.templates_dir() == REPO / "templates"
    assert paths.roles_dir() == REPO / "roles"
    assert paths.playbooks_dir() == REPO / "playbooks"
    assert paths.policy_pack_dir() == REPO / "policypack"
    assert paths.example_team() == EXAMPLE


def installed_layout(root: Path) -> Path:
    """A stand-in for the wheel's nomadrig/_project: the shipped folders, each with one marker file."""
    for folder in paths.SHIPPED_FOLDERS:
        (root / folder).mkdir(parents=True)
    (root / "policypack" / "PulumiPolicy.yaml").write_text("runtime: python\n")
    return root


def test_an_installed_nomadrig_uses_the_folders_inside_its_package(tmp_path, monkeypatch):
    shipped = installed_layout(tmp_path / "site-packages" / "nomadrig" / "_project")
    monkeypatch.setattr(paths, "SHIPPED_DIR", shipped)
    monkeypatch.delenv(paths.POLICY_PACK_ENV, raising=False)

    assert paths.project_root() == shipped
    assert [paths.templates_dir(), paths.roles_dir(), paths.playbooks_dir(), paths.policy_pack_dir()] == [
        shipped / "templates", shipped / "roles", shipped / "playbooks", shipped / "policypack"]


def test_a_missing_shipped_folder_names_itself_and_the_repair(tmp_path, monkeypatch):
    shipped = installed_layout(tmp_path / "_project")
    (shipped / "templates").rmdir()
    monkeypatch.setattr(paths, "SHIPPED_DIR", shipped)

    with pytest.raises(CloudError) as raised:
        paths.templates_dir()
    assert f"nomadrig's templates/ is missing: {shipped / 'templates'} does not exist" in str(raised.value)
    assert "Reinstall nomadrig" in str(raised.value)


def test_the_policy_pack_override_must_hold_a_pack(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.POLICY_PACK_ENV, str(tmp_path))
    with pytest.raises(CloudError, match="PulumiPolicy.yaml not found"):
        paths.policy_pack_dir()
    (tmp_path / "PulumiPolicy.yaml").write_text("runtime: python\n")
    assert paths.policy_pack_dir() == tmp_path


def test_the_pack_names_no_virtualenv_so_it_runs_on_nomadrigs_own_python(home):
    """A virtualenv relative to the pack (../.venv) exists in a checkout only; the engine hands the CLI its Python."""
    import yaml

    from nomadrig.engine.settings import EngineSettings

    pack = yaml.safe_load((paths.policy_pack_dir() / "PulumiPolicy.yaml").read_text())
    assert "virtualenv" not in pack["runtime"].get("options", {})
    env = EngineSettings.for_team("vision-lab", "file://~/.nomadrig/state", print).env
    assert env["PULUMI_PYTHON_CMD"] == sys.executable


def test_the_pack_edits_no_import_path():
    assert "sys.path" not in (REPO / "policypack" / "__main__.py").read_text()


#: Known elsewhere: the plan worker takes its parent's sys.path (nomadrig/plan/worker.py; reported to the lead).
SYS_PATH_EXCEPTIONS = {"nomadrig/plan/worker.py"}
_MUTATORS = {"insert", "append", "extend", "remove", "pop", "clear"}


def _is_sys_path(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "path" and getattr(node.value, "id", "") == "sys"


def sys_path_edits(tree: ast.AST) -> list[int]:
    """Lines that change sys.path: a mutating method call on it, or an assignment to it or to a slice of it."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _MUTATORS \
                and _is_sys_path(node.func.value):
            lines.append(node.lineno)
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, (ast.AugAssign, ast.AnnAssign)) else []
        for target in targets:
            if _is_sys_path(target) or (isinstance(target, ast.Subscript) and _is_sys_path(target.value)):
                lines.append(node.lineno)
    return sorted(lines)


def test_sys_path_edits_are_found():
    assert sys_path_edits(ast.parse("import sys\nsys.path.insert(0, 'x')\nsys.path[:0] = ['y']\nsys.path += []\n"
                                    "print(sys.path)\n")) == [2, 3, 4]


def test_no_module_of_nomadrig_stacks_or_the_pack_edits_the_import_path():
    edits = [f"{path.relative_to(REPO).as_posix()}:{line}"
             for top in ("nomadrig", "stacks", "policypack")
             for path in sorted((REPO / top).rglob("*.py"))
             if path.relative_to(REPO).as_posix() not in SYS_PATH_EXCEPTIONS
             for line in sys_path_edits(ast.parse(path.read_text()))]
    assert edits == []


# -- NOMADRIG_HOME, consumer by consumer -------------------------------------------------------


def test_home_defaults_to_dot_nomadrig_and_follows_the_variable(monkeypatch, tmp_path):
    monkeypatch.delenv("NOMADRIG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "ada"))
    assert paths.nomadrig_home() == tmp_path / "ada" / ".nomadrig"
    monkeypatch.setenv("NOMADRIG_HOME", "~/elsewhere")
    assert paths.nomadrig_home() == tmp_path / "ada" / "elsewhere"


def test_tower_runs_and_their_reports_live_under_the_home(home):
    from nomadrig import towers

    assert towers.RunOptions().runs_dir == home / "runs"
    saved = towers.RunReport(tower="basement", host="192.0.2.10", mode="apply", started="now", status="successful",
                             tower_public_key="k" * 43 + "=")
    run_dir = home / "runs" / "20261201T000000.000000Z-basement"
    run_dir.mkdir(parents=True)
    (run_dir / "report.json").write_text(saved.to_json())
    assert towers.latest_report("basement", with_key=True) == saved


def test_the_tower_provider_keeps_its_runs_under_the_home(home):
    from nomadrig.stacks.args import tower_args

    from nomadrig.spec import tower_spec
    from nomadrig.team.load import load_team

    team = load_team(EXAMPLE)
    assert tower_args(tower_spec(team, team.towers[0])).runs_dir == str(home / "runs")


def test_the_refreshed_catalog_lives_under_the_home_unless_nomadrig_catalog_says(home, monkeypatch, tmp_path):
    from nomadrig.catalog.refreshed import refreshed_data_dir

    assert refreshed_data_dir() == home / "catalog"
    monkeypatch.setenv("NOMADRIG_CATALOG", str(tmp_path / "prices"))
    assert refreshed_data_dir() == tmp_path / "prices"


def test_the_engine_works_and_keeps_state_under_the_home(home):
    from nomadrig.engine.settings import EngineSettings

    settings = EngineSettings.for_team("vision-lab", "file://~/.nomadrig/state", print)
    assert settings.work_dir == home / "work" / "vision-lab" and settings.work_dir.is_dir()
    assert settings.backend_url == f"file://{home / 'state'}" and (home / "state").is_dir()
    assert settings.env["PULUMI_CONFIG_PASSPHRASE_FILE"] == str(home / "passphrase")
    assert paths.retained_volumes_file("vision-lab") == settings.work_dir / "retained.json"


@pytest.mark.parametrize("url, where", [
    ("file://~/.nomadrig/state", "{home}/state"),
    ("file://~/.nomadrig", "{home}"),
    ("file://~/pulumi-state", "{user}/pulumi-state"),
    ("file:///srv/state", "/srv/state"),
    ("s3://bucket/prefix", None),
    ("https://api.pulumi.com", None),
])
def test_a_file_url_under_dot_nomadrig_means_the_home(url, where, home, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    expected = None if where is None else Path(where.format(home=home, user=tmp_path / "user"))
    assert paths.local_path_of_url(url) == expected


# -- the passphrase: only commands that write state create it -------------------------------------


def test_engine_settings_create_no_passphrase_and_a_write_creates_it_once(home):
    from nomadrig.engine.settings import EngineSettings

    warnings: list[str] = []
    settings = EngineSettings.for_team("vision-lab", "file://~/.nomadrig/state", warnings.append)
    assert not (home / "passphrase").exists() and warnings == []

    settings.ensure_passphrase()
    first = (home / "passphrase").read_text()
    settings.ensure_passphrase()

    assert stat.S_IMODE((home / "passphrase").stat().st_mode) == 0o600 and len(first.strip()) >= 32
    assert (home / "passphrase").read_text() == first, "a second write must not replace the passphrase"
    assert len(warnings) == 1 and "Back it up" in warnings[0]


def test_a_passphrase_from_the_environment_is_never_written_to_a_file(home, monkeypatch):
    from nomadrig.engine.settings import EngineSettings

    monkeypatch.setenv("NOMADRIG_PASSPHRASE", "correct horse battery staple")
    settings = EngineSettings.for_team("vision-lab", "file://~/.nomadrig/state", print)
    settings.ensure_passphrase()
    assert settings.env["PULUMI_CONFIG_PASSPHRASE"] == "correct horse battery staple"
    assert not (home / "passphrase").exists()


def test_read_only_commands_leave_no_passphrase_and_up_creates_it(monkeypatch, tmp_path):
    from nomadrig.cli import app

    fake = FakePulumi.install(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # ls asks the cloud for live state: refused here
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    runner = CliRunner()
    for command in (["ls"], ["outputs", "ada"], ["ssh-config"], ["validate"], ["cost"], ["policy", "list"]):
        result = runner.invoke(app, [*command, "--team", str(EXAMPLE)])
        assert result.exit_code in (0, 3), (command, result.output)  # outputs of a stack never made: exit 3
        assert not (fake.home / "passphrase").exists(), f"`nomadrig {' '.join(command)}` created a passphrase"

    assert runner.invoke(app, ["up", "ada", "--yes", "--team", str(EXAMPLE)]).exit_code == 0
    assert (fake.home / "passphrase").exists()
    ls = runner.invoke(app, ["ls", "--team", str(EXAMPLE)])
    assert ls.exit_code == 0, ls.output
    last = fake.calls()[-1]
    assert last["env"]["PULUMI_CONFIG_PASSPHRASE_FILE"] == str(fake.home / "passphrase"), "read-only uses it"


# -- the agent's install dir holds its sources only ------------------------------------------------


def test_the_agent_runs_without_writing_bytecode_beside_its_installed_sources(tmp_path):
    """The #12 fault: a __pycache__ appeared on boxes once the agent had run; the wrapper now runs with -B."""
    install = tmp_path / "opt" / "nomadrig" / "agent"
    for item in bundle.agent_files({"mode": "report", "idle_minutes": 60}):
        if item.path.startswith(bundle.INSTALL_DIR):
            target = install / Path(item.path).relative_to(bundle.INSTALL_DIR)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(item.content)
    wrapper = Path(bundle.UNITS_SOURCE_DIR, "nomadrig-agent").read_text().replace(bundle.INSTALL_DIR, str(install))
    script = tmp_path / "nomadrig-agent"
    script.write_text(wrapper.replace("/usr/bin/python3", "python3"))

    done = subprocess.run(["sh", str(script), "--help"], capture_output=True, text=True, timeout=60, check=False)

    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (install / "nomadrig_agent").iterdir()) == bundle.package_modules()
