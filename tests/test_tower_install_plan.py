"""The compatibility matrix wired into the team file, the tower's Ansible variables and the roles' files.

What a user relies on: leaving driver_branch, kernel_modules and cuda_version out gets a driver
chosen from the GPUs; an impossible combination is refused when the file is read (exit 2, the
field and the fix); the chosen plan is what the roles receive; the modprobe options file the role
writes is the one its template renders.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from nomadrig.compat import load_matrix
from nomadrig.errors import BadInputError
from nomadrig.spec import tower_spec
from nomadrig.team.load import parse_team
from nomadrig.towers import OPEN_UNSUPPORTED_GPUS_OPTION, install_vars, tower_vars

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "team.yaml"
MODPROBE_TEMPLATE = REPO / "roles" / "nvidia_driver" / "templates" / "nomadrig-nvidia-options.conf.j2"


def example_data() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE.read_text())


def team_text(drop: tuple[str, ...] = ("driver_branch", "cuda_version"), **tower: Any) -> str:
    """The example team file with its tower changed: `drop` fields left out, `tower` fields set."""
    data = copy.deepcopy(example_data())
    entry = data["towers"][0]
    for key in drop:
        entry.pop(key, None)
    entry.update(tower)
    return yaml.safe_dump(data, sort_keys=False)


def gpus(*models: str) -> list[dict[str, Any]]:
    return [{"model": model, "count": 1} for model in models]


def refusal(text: str) -> str:
    with pytest.raises(BadInputError) as error:
        parse_team(text, "team.yaml")
    return error.value.render()


# ------------------------------------------------------------------ the team file


def test_a_tower_without_a_branch_gets_one_chosen_from_its_gpus_and_release() -> None:
    team = parse_team(team_text(os="debian-12", gpus=gpus("RTX 4090")), "team.yaml")
    tower = team.towers[0]
    assert (tower.driver_branch, tower.cuda_version, tower.kernel_modules) == (None, None, None)
    variables = tower_vars(team, tower)
    # Debian 12's archive offers branch 535 and toolkit 11.8, nothing else.
    assert (variables["nvidia_driver_branch"], variables["cuda_version"]) == ("535", "11.8")
    assert tower_spec(team, tower).driver_branch == "535"


def test_an_rtx_5090_on_nvidias_repository_gets_a_blackwell_branch_with_open_modules_and_cu128_wheels() -> None:
    team = parse_team(team_text(os="ubuntu-24.04", driver_channel="cuda_repo", gpus=gpus("RTX 5090")), "team.yaml")
    variables = tower_vars(team, team.towers[0])
    assert int(variables["nvidia_driver_branch"]) >= 570
    assert variables["nvidia_driver_kernel_modules"] == "open"
    [torch] = variables["frameworks_pins"]
    index_cuda = torch["index"].rsplit("/cu", 1)[-1]
    assert int(index_cuda) >= 128, torch


def test_open_modules_on_an_rtx_4090_with_debian_12_set_the_unsupported_gpus_option() -> None:
    team = parse_team(team_text(os="debian-12", gpus=gpus("RTX 4090"), kernel_modules="open"), "team.yaml")
    variables = tower_vars(team, team.towers[0])
    assert variables["nvidia_driver_branch"] == "535"
    assert variables["nvidia_driver_kernel_modules"] == "open"
    assert variables["nvidia_driver_module_options"] == ["NVreg_OpenRmEnableUnsupportedGpus=1"]


@pytest.mark.parametrize(("os", "gpu", "flavour"), [
    ("debian-12", "A100 80GB", "open"),  # a data-center GPU loads the open modules without the option
    ("debian-13", "RTX 4090", "open"),  # 550 is past 545: GeForce loads them without it
    ("debian-12", "RTX 4090", "proprietary"),
])
def test_the_unsupported_gpus_option_is_set_only_where_the_open_module_needs_it(os: str, gpu: str,
                                                                                 flavour: str) -> None:
    team = parse_team(team_text(drop=("driver_branch", "cuda_version"), os=os, gpus=gpus(gpu),
                                kernel_modules=flavour), "team.yaml")
    assert install_vars(team, team.towers[0])["nvidia_driver_module_options"] == []


def test_a_v100_gets_the_proprietary_modules() -> None:
    team = parse_team(team_text(os="debian-12", gpus=gpus("V100")), "team.yaml")
    assert install_vars(team, team.towers[0])["nvidia_driver_kernel_modules"] == "proprietary"


def test_open_modules_asked_for_a_v100_are_refused_naming_the_field_and_the_fix() -> None:
    text = refusal(team_text(os="debian-12", gpus=gpus("V100"), kernel_modules="open"))
    assert "towers[0].kernel_modules" in text
    assert "set kernel_modules: proprietary" in text


def test_cuda_13_on_branch_550_is_refused_naming_the_field_and_the_fix() -> None:
    text = refusal(team_text(drop=(), os="debian-13", driver_channel="cuda_repo", driver_branch="550",
                             cuda_version="13.0", gpus=gpus("RTX 4090")))
    assert "team.yaml:" in text and "towers[0].cuda_version" in text
    assert "CUDA 13.0 needs driver 580" in text
    assert 'set driver_branch: "580"' in text


def test_a_refusal_points_at_the_line_of_the_field() -> None:
    text = team_text(drop=(), os="debian-13", driver_channel="cuda_repo", driver_branch="550", cuda_version="13.0",
                     gpus=gpus("RTX 4090"))
    line = next(i for i, row in enumerate(text.splitlines(), 1) if row.strip().startswith("cuda_version:"))
    assert f"team.yaml:{line}: towers[0].cuda_version" in refusal(text)


def test_a_python_that_is_not_a_version_is_refused() -> None:
    assert "towers[0].python" in refusal(team_text(python="three"))


def test_the_example_team_file_is_valid_and_keeps_its_choices() -> None:
    team = parse_team(EXAMPLE.read_text(), str(EXAMPLE))
    variables = tower_vars(team, team.towers[0])
    tower = team.towers[0]
    assert (variables["nvidia_driver_branch"], variables["cuda_version"]) == (tower.driver_branch, tower.cuda_version)


# ------------------------------------------------------------------ what the roles receive


def test_the_plans_wheels_reach_the_frameworks_role_with_their_index() -> None:
    team = parse_team(team_text(os="debian-13", gpus=gpus("RTX 4090"), frameworks=["pytorch", "jax"]), "team.yaml")
    pins = {pin["framework"]: pin for pin in tower_vars(team, team.towers[0])["frameworks_pins"]}
    assert set(pins) == {"pytorch", "jax"}
    assert any(p.startswith("torch==") for p in pins["pytorch"]["packages"])
    assert pins["pytorch"]["index"].startswith("https://download.pytorch.org/whl/cu")
    assert pins["jax"]["index"] == ""  # PyPI
    assert tower_vars(team, team.towers[0])["frameworks_python"] == "3.13"  # Debian 13's python3


def test_preflight_gets_the_pci_ids_of_the_declared_gpus_from_the_matrix() -> None:
    team = parse_team(team_text(os="debian-12", gpus=[{"model": "RTX 4090", "count": 2}]), "team.yaml")
    variables = tower_vars(team, team.towers[0])
    matrix = load_matrix()
    assert variables["preflight_planned_gpus"] == [{"model": "RTX 4090", "count": 2,
                                                    "pci_ids": list(matrix.pci_ids["RTX 4090"])}]
    assert variables["preflight_known_gpu_pci_ids"] == matrix.pci_models()
    assert "branch 535" in variables["preflight_driver_plan"]


def test_preflight_and_the_tower_rule_support_the_same_operating_systems() -> None:
    from nomadrig.team.model import SUPPORTED_OS

    team = parse_team(EXAMPLE.read_text(), "team.yaml")
    assert tower_vars(team, team.towers[0])["preflight_supported_os"] == list(SUPPORTED_OS)


def test_every_catalog_tower_gpu_has_pci_ids() -> None:
    from nomadrig.catalog import load_catalog

    matrix = load_matrix()
    missing = [g.model for g in load_catalog().gpu_models() if matrix.gpu(g.model).model not in matrix.pci_ids]
    assert not missing, f"no PCI ids in pci_ids.csv for {missing}"


# ------------------------------------------------------------------ the role's template, rendered as Ansible would


def render_modprobe(**variables: Any) -> str:
    """The role's template through Jinja with the template module's defaults (trim_blocks, strict variables)."""
    env = jinja2.Environment(trim_blocks=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.from_string(MODPROBE_TEMPLATE.read_text()).render(**variables)


def test_the_modprobe_file_carries_the_plans_option_for_the_nvidia_module() -> None:
    team = parse_team(team_text(os="debian-12", gpus=gpus("RTX 4090"), kernel_modules="open"), "team.yaml")
    text = render_modprobe(**tower_vars(team, team.towers[0]))
    options = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert options == [f"options nvidia {OPEN_UNSUPPORTED_GPUS_OPTION}"]
    assert "branch 535, open kernel modules" in text


def test_the_modprobe_file_has_one_options_line_per_parameter() -> None:
    text = render_modprobe(nvidia_driver_branch="535", nvidia_driver_kernel_modules="open",
                           nvidia_driver_module_options=["NVreg_A=1", "NVreg_B=0"])
    assert [line for line in text.splitlines() if line.startswith("options")] == [
        "options nvidia NVreg_A=1", "options nvidia NVreg_B=0"]


def role_tasks(role: str, name: str) -> list[dict[str, Any]]:
    return yaml.safe_load((REPO / "roles" / role / "tasks" / name).read_text())


def test_the_options_file_is_written_from_the_template_and_its_change_notifies_a_handler() -> None:
    tasks = role_tasks("nvidia_driver", "module_options.yml")
    [write] = [t for t in tasks if "ansible.builtin.template" in t]
    assert write["ansible.builtin.template"]["src"] == MODPROBE_TEMPLATE.name
    handlers = yaml.safe_load((REPO / "roles" / "nvidia_driver" / "handlers" / "main.yml").read_text())
    listened = {topic for h in handlers for topic in ([h["listen"]] if isinstance(h.get("listen"), str)
                                                       else h.get("listen", []))}
    assert write["notify"] in listened
    reboot = (REPO / "roles" / "nvidia_driver" / "tasks" / "reboot.yml").read_text()
    assert write["register"] in reboot, "a changed options file must lead to the reboot that applies it"


def test_the_persistence_daemon_is_started_only_where_the_wanted_module_is_loaded() -> None:
    tasks = role_tasks("nvidia_driver", "persistence.yml")
    [start] = [t for t in tasks if t.get("ansible.builtin.systemd_service", {}).get("state") == "started"]
    assert "__nvidia_driver_loaded_branch == nvidia_driver_branch | string" in start["when"]
    assert start.get("ignore_errors") is True and start.get("register"), "a failed start must not stop the play"
    [enable] = [t for t in tasks if t.get("ansible.builtin.systemd_service", {}).get("enabled")]
    assert "state" not in enable["ansible.builtin.systemd_service"]


def test_the_installed_branch_is_read_from_package_versions_not_names() -> None:
    """A transitional nvidia-dkms-535 that pulled 580 must read as 580 (the newest version installed)."""
    tasks = role_tasks("nvidia_driver", "detect.yml")
    [work] = [t for t in tasks if t["name"] == "Work out the installed and the loaded driver branch"]
    # What `dpkg-query --show` prints in tower_facts' format (status, name, version); "rc" is removed, not installed.
    dpkg = ["ii  nvidia-dkms-535 535.309.01-0ubuntu0.24.04.2", "ii  nvidia-dkms-580 580.95.05-0ubuntu0.24.04.1",
            "ii  nvidia-settings 999.1-1", "rc  nvidia-driver 1:590.10.01-1", "hi  nvidia-kernel-common 1:550.163.01-2"]
    installed = _ansible_eval(work, dpkg)
    assert installed == "580"


def _ansible_eval(task: dict[str, Any], dpkg_lines: list[str]) -> str:
    """The installed branch the detect task works out from the packages tower_facts reads from these lines."""
    [read] = [t for t in role_tasks("tower_facts", "packages.yml") if "ansible.builtin.set_fact" in t]
    return _ansible_run([read, task], {"__tower_facts_dpkg": {"stdout_lines": dpkg_lines},
                                       "__nvidia_driver_proc_version": {"content": ""},
                                       "__nvidia_driver_smi": {"stdout_lines": []}},
                        "{{ __nvidia_driver_installed_branch }}")


def _ansible_run(tasks: list[dict[str, Any]], variables: dict[str, Any], expression: str) -> str:
    """Run tasks of a role through ansible-playbook on localhost; return what `expression` renders to after them."""
    import json
    import subprocess
    import sys
    import tempfile

    show = {"name": "show", "ansible.builtin.debug": {"msg": "RESULT=" + expression}}
    play = [{"hosts": "localhost", "gather_facts": False, "vars": variables, "tasks": [*tasks, show]}]
    with tempfile.TemporaryDirectory() as tmp:
        playbook = Path(tmp) / "play.yml"
        playbook.write_text(yaml.safe_dump(play))
        env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": tmp, "ANSIBLE_STDOUT_CALLBACK": "json"}
        done = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-c", "local", "-i",
                               "localhost,", str(playbook)], capture_output=True, text=True, timeout=300,
                              stdin=subprocess.DEVNULL, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout)
    messages = [h.get("msg", "") for play in report["plays"] for t in play["tasks"] for h in t["hosts"].values()]
    return next(m for m in messages if isinstance(m, str) and m.startswith("RESULT=")).removeprefix("RESULT=")


def test_the_frameworks_role_installs_the_plans_wheels_from_the_plans_index() -> None:
    """Round trip: tower_vars' frameworks_* output through the role's own 'Choose what to install' task."""
    team = parse_team(team_text(os="debian-13", gpus=gpus("RTX 4090"), frameworks=["pytorch", "jax"]), "team.yaml")
    variables = {k: v for k, v in tower_vars(team, team.towers[0]).items() if k.startswith("frameworks_")}
    role = REPO / "roles" / "frameworks"
    play_vars = {**yaml.safe_load((role / "defaults" / "main.yml").read_text()),
                 **yaml.safe_load((role / "vars" / "main.yml").read_text()), **variables}
    [choose] = [t for t in role_tasks("frameworks", "main.yml") if t["name"] == "Choose what to install and from where"]
    sets = _ansible_run([choose], play_vars, "{{ __frameworks_install_sets | to_json }}")
    chosen = {s["framework"]: (s["packages"], s["index"]) for s in yaml.safe_load(sets)}
    planned = {p["framework"]: (p["packages"], p["index"]) for p in variables["frameworks_pins"]}
    assert chosen == planned



@pytest.mark.parametrize(("os_release", "channel", "signed"), [
    ("ubuntu-24.04", "distro", True), ("ubuntu-24.04", "cuda_repo", False), ("debian-13", "distro", False)])
def test_preflight_leaves_secure_boot_to_the_driver_only_on_ubuntus_own_archive(
        os_release: str, channel: str, signed: bool) -> None:
    """Ubuntu's archive has Canonical's signed modules, which nvidia_driver takes or refuses with the fix."""
    team = parse_team(team_text(os=os_release, driver_channel=channel, gpus=gpus("RTX 4090")), "team.yaml")
    assert tower_vars(team, team.towers[0])["preflight_signed_modules"] is signed
