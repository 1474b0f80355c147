"""What nomadrig.towers renders from a team file, without Ansible or a tower."""

from __future__ import annotations

import base64
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nomadrig.catalog import load_catalog
from nomadrig.cli.tower import parse_overrides
from nomadrig.errors import BadInputError, CloudError
from nomadrig.team.load import load_team, parse_team
from nomadrig.team.model import Team, TowerGpu
from nomadrig.towers import RunReport, inventory, latest_report, peer_configs, tower_vars
from nomadrig.towers import runner as tower_module
from nomadrig.towers.runner import _EventCollector, _new_run_dir

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "team.yaml"
WG_KEY_ADA = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
WG_KEY_LINUS = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="


@pytest.fixture
def team() -> Team:
    return load_team(EXAMPLE)


def with_tower(team: Team, **changes: object) -> Team:
    tower = team.towers[0].model_copy(update=changes)
    return team.model_copy(update={"towers": [tower]})


def with_wireguard_keys(team: Team, keys: dict[str, str]) -> Team:
    nomads = [n.model_copy(update={"wireguard_public_key": keys.get(n.name, "")}) for n in team.nomads]
    return team.model_copy(update={"nomads": nomads})


def test_gpu_tdp_comes_from_the_catalog(team: Team) -> None:
    variables = tower_vars(team, team.towers[0])
    declared = team.towers[0].gpus[0]
    catalog_tdp = load_catalog().gpu(declared.model).tdp_w
    assert variables["preflight_gpus"] == [{"model": declared.model, "count": declared.count, "tdp_w": catalog_tdp}]
    assert variables["preflight_psu_watts"] == team.towers[0].psu_watts
    assert variables["preflight_cpu_tdp_w"] == team.towers[0].cpu_tdp_watts


def test_unknown_gpu_model_is_refused_with_the_field_path(team: Team) -> None:
    team = with_tower(team, gpus=[TowerGpu(model="Imaginary 9999", count=1)])
    with pytest.raises(BadInputError) as error:
        tower_vars(team, team.towers[0])
    assert "towers[0].gpus[0].model" in error.value.render()
    assert "Imaginary 9999" in error.value.render()


def test_only_the_towers_nomads_get_accounts(team: Team) -> None:
    variables = tower_vars(team, team.towers[0])
    assert [n["name"] for n in variables["base_nomads"]] == team.towers[0].nomads
    by_name = {n.name: n for n in team.nomads}
    for account in variables["base_nomads"]:
        assert account["ssh_key"] == by_name[account["name"]].ssh_key


def test_a_tower_without_a_nomad_list_gets_every_nomad(team: Team) -> None:
    team = with_tower(team, nomads=[])
    names = [n["name"] for n in tower_vars(team, team.towers[0])["base_nomads"]]
    assert names == [n.name for n in team.nomads]


def test_wireguard_peers_are_the_nomads_with_keys_at_distinct_addresses(team: Team) -> None:
    team = with_wireguard_keys(
        with_tower(team, nomads=["ada", "grace", "linus"]), {"ada": WG_KEY_ADA, "linus": WG_KEY_LINUS}
    )
    peers = tower_vars(team, team.towers[0])["remote_access_peers"]
    assert [(p["name"], p["public_key"]) for p in peers] == [("ada", WG_KEY_ADA), ("linus", WG_KEY_LINUS)]
    addresses = [p["address"] for p in peers]
    assert len(set(addresses)) == 2
    assert "10.77.0.1/32" not in addresses  # the tower's own address


def test_tower_settings_reach_the_roles(team: Team) -> None:
    team = with_tower(
        team,
        driver_channel="cuda_repo",
        driver_branch="535",
        cuda_version="11.8",
        frameworks=["jax"],
        ssh_port=2222,
        wireguard_port=51999,
        gpu_containers=True,
    )
    v = tower_vars(team, team.towers[0])
    assert (v["nvidia_driver_channel"], v["cuda_channel"]) == ("cuda_repo", "cuda_repo")
    assert v["nvidia_driver_branch"] == "535"
    assert (v["cuda_version"], v["frameworks_cuda_version"]) == ("11.8", "11.8")
    assert v["frameworks_list"] == ["jax"]
    assert v["hardening_ssh_port"] == 2222
    assert v["hardening_wireguard_port"] == v["remote_access_wireguard_port"] == 51999
    assert v["gpu_containers_enabled"] is True


def test_a_tower_without_gpus_gets_the_cpu_path(team: Team) -> None:
    team = with_tower(team, gpus=[])
    v = tower_vars(team, team.towers[0])
    assert v["frameworks_device"] == "cpu"
    assert v["verify_require_gpu"] is False
    assert v["preflight_gpus"] == []


def test_verify_expects_the_team_files_gpu_count(team: Team) -> None:
    team = with_tower(team, gpus=[TowerGpu(model="RTX 3090", count=2), TowerGpu(model="RTX A6000", count=1)])
    v = tower_vars(team, team.towers[0])
    assert v["verify_expected_gpu_count"] == 3
    assert v["verify_require_gpu"] is True
    # verify's expected branch follows nvidia_driver_branch (its default), so the plan's branch reaches it.
    assert v["nvidia_driver_branch"]
    cpu_only = with_tower(team, gpus=[])
    assert tower_vars(cpu_only, cpu_only.towers[0])["verify_expected_gpu_count"] == 0


def test_policy_settings_become_preflight_limits(team: Team) -> None:
    policy = team.policy.model_copy(update={"tower_min_ram_gb": 64, "psu_margin_pct": 30})
    team = team.model_copy(update={"policy": policy})
    v = tower_vars(team, team.towers[0])
    assert (v["preflight_min_ram_gb"], v["preflight_psu_margin_pct"]) == (64, 30)


def test_overrides_win_over_the_team_file(team: Team) -> None:
    v = tower_vars(team, team.towers[0], overrides={"nvidia_driver_branch": "535", "agent_mode": "shutdown"})
    assert v["nvidia_driver_branch"] == "535"
    assert v["agent_mode"] == "shutdown"


def test_the_cuda_repository_url_can_be_overridden_for_a_mirror(team: Team) -> None:
    # cuda_repo (NVIDIA's CUDA repository, included by nvidia_driver and cuda) takes its variables as cuda_ ones.
    mirror = "https://mirror.example/nvidia/cuda/repos"
    v = tower_vars(team, team.towers[0], overrides={"cuda_repo_base": mirror})
    assert v["cuda_repo_base"] == mirror


def test_the_cuda_repository_is_one_role_that_nvidia_driver_and_cuda_include() -> None:
    roles = EXAMPLE.parents[1] / "roles"
    files = {str(f.relative_to(roles)): f.read_text() for f in roles.rglob("*.yml")}
    includers = sorted(name for name, text in files.items() if re.search(r"include_role:\s+name: cuda_repo\b", text))
    assert includers == ["cuda/tasks/cuda_repo.yml", "nvidia_driver/tasks/cuda_repo.yml", "nvidia_driver/tasks/main.yml"]
    source = r"ansible.builtin.deb822_repository:(?:\n .*)*\n +uris: .*cuda_repo_url"
    writers = sorted(name for name, text in files.items() if re.search(source, text))
    assert writers == ["cuda_repo/tasks/present.yml"], "NVIDIA's repository is written in one place"
    urls = sorted(name for name, text in files.items() if "developer.download.nvidia.com" in text)
    assert {url.split("/")[0] for url in urls} == {"cuda_repo"}, urls


def test_the_releases_with_a_cuda_repository_are_the_compatibility_matrixs() -> None:
    from nomadrig.compat import load_matrix

    role_vars = yaml.safe_load((EXAMPLE.parents[1] / "roles" / "cuda_repo" / "vars" / "main.yml").read_text())
    matrix = {r.cuda_repo for r in load_matrix().releases.values() if r.cuda_repo}
    assert set(role_vars["cuda_repo_release_keys"]) == matrix


def test_an_override_that_names_no_role_is_refused(team: Team) -> None:
    with pytest.raises(BadInputError) as error:
        tower_vars(team, team.towers[0], overrides={"driver_branch": "535"})
    assert "driver_branch" in error.value.render()
    assert "nvidia_driver" in error.value.render()  # the fix lists the role prefixes


@pytest.mark.parametrize("fact", ["tower_facts_in_container", "tower_facts_secure_boot", "tower_facts_packages"])
def test_an_override_of_what_tower_facts_reads_from_the_machine_is_refused(team: Team, fact: str) -> None:
    # What tower_facts decides comes from the machine, not from the team; only its declared input passes.
    with pytest.raises(BadInputError) as error:
        tower_vars(team, team.towers[0], overrides={fact: False})
    assert fact in error.value.render()
    assert tower_vars(team, team.towers[0], overrides={"tower_facts_efi_dir": "/srv/efi"})["tower_facts_efi_dir"] == (
        "/srv/efi")


def test_the_tower_facts_inputs_that_pass_are_the_ones_its_argument_specs_declare() -> None:
    from nomadrig.towers.variables import TOWER_FACTS_INPUTS

    specs = yaml.safe_load((EXAMPLE.parents[1] / "roles" / "tower_facts" / "meta" / "argument_specs.yml").read_text())
    assert set(TOWER_FACTS_INPUTS) == set(specs["argument_specs"]["main"]["options"])


def test_inventory_puts_the_tower_in_group_towers(team: Team, tmp_path: Path) -> None:
    tower = team.towers[0]
    hosts = inventory(tower, ssh_key_file=tmp_path / "id")["towers"]["hosts"]
    assert list(hosts) == [tower.name]
    host = hosts[tower.name]
    assert (host["ansible_host"], host["ansible_port"], host["ansible_user"]) == (
        tower.address,
        tower.ssh_port,
        tower.ssh_user,
    )
    assert host["ansible_ssh_private_key_file"] == str(tmp_path / "id")
    assert "ansible_ssh_common_args" not in host  # host keys are checked unless a test says otherwise


def test_peer_configs_carry_no_private_key(team: Team) -> None:
    team = with_wireguard_keys(team, {"ada": WG_KEY_ADA})
    tower = team.towers[0]
    configs = peer_configs(team, tower, WG_KEY_LINUS)
    assert set(configs) == set(tower.nomads)
    ada = configs["ada"]
    assert f"PublicKey = {WG_KEY_LINUS}" in ada
    assert f"Endpoint = {tower.address}:{tower.wireguard_port}" in ada
    assert "PrivateKey = <" in ada and "wg genkey" in ada
    address = tower_vars(team, tower)["remote_access_peers"][0]["address"]
    assert f"Address = {address}" in ada  # the same address the tower was configured with
    assert "NOTE" in configs["linus"]  # no public key in the team file yet


def test_run_dirs_are_private(tmp_path: Path, team: Team) -> None:
    run_dir = _new_run_dir(tmp_path / "runs", team.towers[0])
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    assert run_dir.name.endswith(f"-{team.towers[0].name}")


def _event(kind: str, task: str = "", role: str = "", **data: object) -> dict[str, object]:
    return {"event": kind, "event_data": {"task": task, "role": role, **data}}


def test_the_event_stream_becomes_the_report() -> None:
    report = RunReport(tower="t1", host="192.0.2.1", mode="apply", started="now")
    seen: list[tuple[str, int]] = []
    collect = _EventCollector(report, lambda host, task, done, total: seen.append((task, done)), total=None)
    events = [
        _event("playbook_on_task_start", "Install the driver", "nvidia_driver"),
        _event("runner_on_ok", "Install the driver", "nvidia_driver", res={"changed": True}),
        _event("playbook_on_task_start", "Probe", "preflight"),
        _event("runner_on_failed", "Probe", "preflight", ignore_errors=True, res={"msg": "ignored"}),
        _event("playbook_on_task_start", "Load nftables", "hardening"),
        _event("runner_on_failed", "Load nftables", "hardening", res={"msg": "syntax error"}),
        _event("playbook_on_stats", changed={"t1": 1}, failures={"t1": 1}, ok={"t1": 1}, dark={}, skipped={}),
    ]
    for event in events:
        collect(event)
    assert report.changed_tasks == ["nvidia_driver : Install the driver"]
    assert report.failed_tasks == [{"task": "hardening : Load nftables", "msg": "syntax error"}]
    assert (report.changed, report.failed, report.ok) == (1, 1, 1)
    assert set(report.role_seconds) == {"nvidia_driver", "preflight", "hardening"}
    assert seen[-1] == ("hardening : Load nftables", 2)
    report.status = "failed"
    assert not report.succeeded
    assert "FAILED: hardening : Load nftables: syntax error" in report.summary()


def test_latest_report_prefers_the_newest_with_a_key(tmp_path: Path) -> None:
    for stamp, key in (("20260101T000000Z", WG_KEY_ADA), ("20260102T000000Z", None)):
        run_dir = tmp_path / f"{stamp}-t1"
        run_dir.mkdir()
        report = RunReport(tower="t1", host="h", mode="apply", started=stamp, tower_public_key=key)
        (run_dir / "report.json").write_text(report.to_json())
    assert latest_report("t1", tmp_path).started == "20260102T000000Z"
    assert latest_report("t1", tmp_path, with_key=True).tower_public_key == WG_KEY_ADA
    assert latest_report("other", tmp_path) is None


def test_cli_overrides_are_yaml_values() -> None:
    assert parse_overrides(["frameworks_no_index=true", "frameworks_packages=[jax==0.4.30]", "agent_mode=report"]) == {
        "frameworks_no_index": True,
        "frameworks_packages": ["jax==0.4.30"],
        "agent_mode": "report",
    }
    with pytest.raises(BadInputError):
        parse_overrides(["no-equals-sign"])


def test_cli_has_the_tower_commands() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "nomadrig.cli", "tower", "--help"],
        capture_output=True,
        text=True,
        cwd=EXAMPLE.parents[1],
    )
    assert result.returncode == 0, result.stderr
    for command in ("apply", "check", "verify", "peers"):
        assert command in result.stdout


def test_a_failed_loop_reports_the_failed_items_messages() -> None:
    report = RunReport(tower="t1", host="h", mode="apply", started="now")
    collect = _EventCollector(report, None, total=None)
    result = {
        "msg": "One or more items failed",
        "results": [
            {"item": "torch", "failed": False},
            {"item": "jax", "failed": True, "msg": "No module named 'packaging'"},
        ],
    }
    collect(_event("runner_on_failed", "Install the frameworks", "frameworks", res=result))
    assert report.failed_tasks == [
        {"task": "frameworks : Install the frameworks", "msg": "jax: No module named 'packaging'"}
    ]


# -- who may do what on a tower ------------------------------------------------------------


def test_sudo_goes_to_the_towers_admins_only(team: Team) -> None:
    assert tower_vars(team, team.towers[0])["base_admins"] == team.towers[0].admins == ["ada"]
    team = with_tower(team, admins=["linus"])
    assert tower_vars(team, team.towers[0])["base_admins"] == ["linus"]
    unset = with_tower(team, admins=[])
    assert tower_vars(unset, unset.towers[0])["base_admins"] == []  # no admins: no nomad has sudo


def test_admins_default_to_nobody() -> None:
    from nomadrig.team.model import Tower

    assert Tower.model_fields["admins"].get_default(call_default_factory=True) == []


def test_docker_users_reach_the_role_only_where_the_tower_runs_docker(team: Team) -> None:
    with_docker = with_tower(team, gpu_containers=True, docker_users=["ada"])
    assert tower_vars(with_docker, with_docker.towers[0])["base_docker_users"] == ["ada"]
    # A team built without validation must still not hand docker out without docker.
    without = with_tower(team, gpu_containers=False, docker_users=["ada"])
    assert tower_vars(without, without.towers[0])["base_docker_users"] == []


def test_ssh_only_over_wireguard_follows_the_tunnel_unless_the_tower_says(team: Team) -> None:
    tower = team.towers[0]
    assert tower_vars(team, tower)["hardening_ssh_only_over_wireguard"] is False  # nobody has a WireGuard key
    keyed = with_wireguard_keys(team, {"ada": WG_KEY_ADA})
    assert tower_vars(keyed, keyed.towers[0])["hardening_ssh_only_over_wireguard"] is True
    off = with_tower(keyed, ssh_only_over_wireguard=False)
    assert tower_vars(off, off.towers[0])["hardening_ssh_only_over_wireguard"] is False
    keyed_elsewhere = with_wireguard_keys(team, {"grace": WG_KEY_ADA})  # grace has no account on this tower
    assert tower_vars(keyed_elsewhere, keyed_elsewhere.towers[0])["hardening_ssh_only_over_wireguard"] is False


def test_hardening_and_remote_access_name_the_same_wireguard_interface(team: Team) -> None:
    v = tower_vars(team, team.towers[0])
    assert v["hardening_wireguard_interface"] == v["remote_access_interface"]


def _team_text(**tower_fields: object) -> str:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["towers"][0].update(tower_fields)
    return yaml.safe_dump(data)


@pytest.mark.parametrize(
    "fields, path, words",
    [
        ({"admins": ["grace"]}, "towers[0].admins[0]", "no account on tower"),
        ({"admins": ["nobody"]}, "towers[0].admins[0]", "no account on tower"),
        ({"docker_users": ["grace"], "gpu_containers": True}, "towers[0].docker_users[0]", "no account on tower"),
        ({"docker_users": ["ada"], "gpu_containers": False}, "towers[0].docker_users", "gpu_containers is false"),
    ],
)
def test_tower_access_names_must_be_the_towers_nomads(fields: dict[str, object], path: str, words: str) -> None:
    with pytest.raises(BadInputError) as error:
        parse_team(_team_text(**fields), "team.yaml")
    problems = {p.path: p for p in error.value.problems}
    assert path in problems, error.value.render()
    assert words in problems[path].message
    assert problems[path].fix and problems[path].line


def test_admins_and_docker_users_of_the_tower_validate(team: Team) -> None:
    parsed = parse_team(_team_text(admins=["ada"], docker_users=["linus"], gpu_containers=True), "team.yaml")
    assert (parsed.towers[0].admins, parsed.towers[0].docker_users) == (["ada"], ["linus"])


def test_a_nomad_named_like_a_group_the_roles_manage_is_refused() -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["nomads"][0]["name"] = "docker"
    data["towers"][0]["nomads"] = ["docker", "linus"]
    with pytest.raises(BadInputError) as error:
        parse_team(yaml.safe_dump(data), "team.yaml")
    assert "towers[0].nomads[0]" in error.value.render()
    assert "group" in error.value.render()


# -- what reaches Ansible ---------------------------------------------------------------------


def test_every_string_handed_to_ansible_is_marked_unsafe_and_round_trips(tmp_path: Path) -> None:
    from nomadrig.towers import unsafe_yaml, write_ansible_inputs

    variables = {"base_nomads": [{"name": "{{ x }}", "n": 1, "ok": True, "none": None}], "k\n": "a\u2028\x00b"}
    text = unsafe_yaml(variables)
    assert text.isascii()
    assert '!unsafe "{{ x }}"' in text and '!unsafe "k\\n"' in text
    assert ": 1" in text and ": true" in text  # numbers and booleans keep their type

    class Loader(yaml.SafeLoader):
        """Reads !unsafe as Ansible does, as the plain string."""

    Loader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))
    assert yaml.load(text, Loader=Loader) == variables
    inventory_file = write_ansible_inputs(tmp_path, variables, {"towers": {"hosts": {"t": {"ansible_user": "a"}}}})
    assert stat.S_IMODE((tmp_path / "env" / "extravars").stat().st_mode) == 0o600
    assert stat.S_IMODE(inventory_file.stat().st_mode) == 0o600
    assert inventory_file.read_text().startswith('!unsafe "towers"')


def test_inventory_offers_only_the_given_key(team: Team, tmp_path: Path) -> None:
    host = inventory(team.towers[0], ssh_key_file=tmp_path / "id")["towers"]["hosts"][team.towers[0].name]
    assert host["ansible_ssh_extra_args"] == "-o IdentitiesOnly=yes"  # agent keys would use up MaxAuthTries
    host = inventory(team.towers[0], ssh_key_file=None)["towers"]["hosts"][team.towers[0].name]
    assert "ansible_ssh_extra_args" not in host  # with no key given, the agent's keys are the way in


def test_a_run_names_a_playbook_of_the_project_or_is_refused(team: Team, tmp_path: Path) -> None:
    from nomadrig.towers import RunOptions, run

    with pytest.raises(BadInputError) as error:
        run(team, team.towers[0].name, "apply", RunOptions(playbook="../../etc/x.yml", runs_dir=tmp_path))
    assert "access.yml" in error.value.render()  # the fix lists the playbooks there are


def test_tower_yml_runs_the_access_playbook_between_preflight_and_the_gpu_stack() -> None:
    plays = yaml.safe_load((EXAMPLE.parents[1] / "playbooks" / "tower.yml").read_text())
    assert [p.get("ansible.builtin.import_playbook") for p in plays] == [None, "access.yml", None]
    assert [r["role"] for r in plays[0]["roles"]] == ["preflight"]
    access = yaml.safe_load((EXAMPLE.parents[1] / "playbooks" / "access.yml").read_text())
    assert [r["role"] for r in access[0]["roles"]] == ["base", "hardening"]


def test_the_roles_that_ask_whether_the_tower_is_a_container_get_the_one_answer_from_tower_facts() -> None:
    roles = EXAMPLE.parents[1] / "roles"
    readers = sorted(role.name for role in roles.iterdir() if role.name != "tower_facts"
                     and any("tower_facts_in_container" in f.read_text() for f in role.rglob("*.yml")))
    assert readers == ["base", "gpu_containers", "nvidia_driver", "preflight", "remote_access"]
    for name in readers:  # run alone (a test playbook, access.yml), a role still gets the fact
        assert {"role": "tower_facts"} in yaml.safe_load((roles / name / "meta" / "main.yml").read_text())["dependencies"]
    lists = sorted(str(f.relative_to(roles)) for f in roles.rglob("*.yml") if re.search(r"\[systemd-nspawn,", f.read_text()))
    assert lists == ["tower_facts/vars/main.yml"], "one list of container types, in tower_facts"


def test_the_roles_notes_and_warnings_reach_the_report() -> None:
    report = RunReport(tower="t1", host="h", mode="apply", started="now")
    collect = _EventCollector(report, None, total=None)
    note = "NOTE: locked 1 account(s) whose nomad is no longer on this tower: bob."
    collect(_event("runner_on_ok", "Report the accounts locked", "base", res={"msg": note}))
    collect(_event("runner_on_ok", "Report the accounts locked", "base", res={"msg": note}))  # said once
    collect(_event("runner_on_ok", "Show the key", "remote_access", res={"msg": "Tower WireGuard public key: x"}))
    assert report.notes == [note]
    assert note in report.summary()
    assert RunReport.from_json(report.to_json()).notes == [note]


def test_an_ipv6_tower_endpoint_is_bracketed(team: Team) -> None:
    team = with_tower(team, address="2001:db8::10")
    config = peer_configs(team, team.towers[0], WG_KEY_LINUS)["ada"]
    assert f"Endpoint = [2001:db8::10]:{team.towers[0].wireguard_port}" in config


def test_host_keys_are_checked_unless_the_options_relax_it(tmp_path: Path) -> None:
    from nomadrig.towers.runner import _runner_env

    # ansible-runner sets ANSIBLE_HOST_KEY_CHECKING=False itself when nobody says otherwise.
    assert _runner_env(tmp_path)["ANSIBLE_HOST_KEY_CHECKING"] == "True"
    assert _runner_env(tmp_path, strict_host_keys=False)["ANSIBLE_HOST_KEY_CHECKING"] == "False"


def test_text_that_looks_like_a_number_reaches_ansible_as_text(tmp_path: Path) -> None:
    """A driver branch "550" or CUDA "12.10" must stay text: Ansible reads `!unsafe "550"` as the integer 550."""
    from nomadrig.towers import unsafe_yaml

    values = {"branch": "550", "cuda": "12.10", "ids": ["2684"], "flag": "yes", "template": "{{ x }}"}
    extravars = tmp_path / "vars.yml"
    extravars.write_text(unsafe_yaml(values))
    playbook = tmp_path / "show.yml"
    playbook.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"ansible.builtin.debug": {"msg": "{{ [branch is string, cuda, ids[0] is string, flag is string, "
                                          "template] | to_json }}"}}]}]))
    done = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-c", "local", "-i", "localhost,",
                           str(playbook), "-e", f"@{extravars}"], capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL, env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
                                                         "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert '[true, \\"12.10\\", true, true, \\"{{ x }}\\"]' in done.stdout, done.stdout


def test_the_key_remote_access_announces_is_the_reports_and_nothing_else_is() -> None:
    # set_fact's result carries what it set under ansible_facts (Ansible's set_fact module documentation).
    fact = tower_module.PUBLIC_KEY_FACT
    assert f"{fact}:" in (tower_module.PROJECT_ROOT / "roles/remote_access/tasks/wireguard.yml").read_text()
    report = RunReport(tower="t1", host="h", mode="apply", started="now")
    collect = _EventCollector(report, None, total=None)
    collect(_event("runner_on_ok", "Remember the key", "remote_access", res={"ansible_facts": {fact: "not a key"}}))
    assert report.tower_public_key is None
    collect(_event("runner_on_ok", "Remember the key", "remote_access", res={"ansible_facts": {fact: WG_KEY_ADA}}))
    assert report.tower_public_key == WG_KEY_ADA


class _Ran:
    """What _run_ansible returns, as far as read_tower_public_key looks: ansible-runner's status, rc and events."""

    def __init__(self, *events: dict[str, object], status: str = "successful", rc: int = 0) -> None:
        self.events, self.status, self.rc = list(events), status, rc


@pytest.mark.parametrize(
    ("event", "words"),
    [
        (_event("runner_on_unreachable", res={"unreachable": True, "msg": "ssh: connect to host: timed out"}),
         "over SSH: ssh: connect to host: timed out"),
        (_event("runner_on_failed", res={"msg": "sudo: a password is required"}), "sudo: a password is required"),
        (_event("runner_on_ok", res={"content": "aGVsbG8K"}), "does not hold a WireGuard public key"),
        (None, "without a result for the tower"),
    ],
)  # fmt: skip
def test_a_key_that_cannot_be_read_is_an_error_with_ansibles_reason(
    team: Team, monkeypatch: pytest.MonkeyPatch, event: dict[str, object] | None, words: str
) -> None:
    ran = _Ran(event) if event else _Ran(status="failed", rc=4)
    monkeypatch.setattr(tower_module, "_run_ansible", lambda *args, **kwargs: ran)
    with pytest.raises(CloudError, match=re.escape(words)):
        tower_module.read_tower_public_key(team, "basement")


def test_a_key_file_not_there_yet_is_no_key_and_a_good_one_is_read(team: Team, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = _Ran(_event("runner_on_failed", res={"msg": "file not found: /etc/wireguard/nomadrig-tower.pub"}))
    monkeypatch.setattr(tower_module, "_run_ansible", lambda *args, **kwargs: missing)
    assert tower_module.read_tower_public_key(team, "basement") is None
    good = _Ran(_event("runner_on_ok", res={"content": base64.b64encode(f"{WG_KEY_ADA}\n".encode()).decode()}))
    monkeypatch.setattr(tower_module, "_run_ansible", lambda *args, **kwargs: good)
    assert tower_module.read_tower_public_key(team, "basement") == WG_KEY_ADA


@pytest.mark.parametrize("cancelled", [False, True])
def test_a_playbook_killed_before_its_first_event_is_started_once_more_unless_cancelled(
    team: Team, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cancelled: bool
) -> None:
    # ansible-runner's record of a child that died on a signal at once: status failed, rc None, no events.
    runs = iter([_Ran(status="failed", rc=None), _Ran(_event("playbook_on_start"), status="successful", rc=0)])
    calls: list[dict[str, object]] = []

    def fake_run_ansible(*args: object, **kwargs: object) -> _Ran:
        calls.append(kwargs)
        return next(runs)

    monkeypatch.setattr(tower_module, "_run_ansible", fake_run_ansible)
    options = tower_module.RunOptions(runs_dir=tmp_path / "runs", fetch_public_key=False,
                                      cancel=lambda: cancelled)
    report = tower_module.run(team, "basement", "apply", options)
    if cancelled:
        assert len(calls) == 1 and report.status == "failed"
    else:
        assert len(calls) == 2 and report.status == "successful"
        assert any("started once more" in note for note in report.notes)


def _render_role_template(role: str, name: str, variables: dict[str, object]) -> str:
    """A role's template through Jinja with the template module's defaults (trim_blocks, strict variables)."""
    import jinja2
    from ansible.plugins.filter.core import FilterModule

    env = jinja2.Environment(trim_blocks=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters.update(FilterModule().filters())
    text = (Path(__file__).resolve().parent.parent / "roles" / role / "templates" / name).read_text()
    return env.from_string(text).render(ansible_managed="managed", **variables)


@pytest.mark.parametrize("setting", ["manual", "unattended"])
def test_gpu_stack_updates_decide_the_unattended_blacklist_and_the_drivers_pin(team: Team, setting: str) -> None:
    """The team field -> tower_vars -> what base and nvidia_driver write (the container test runs them for real)."""
    team = with_tower(team, gpu_stack_updates=setting, reboot_when_idle=True)
    variables = tower_vars(team, team.towers[0])
    defaults = {**yaml.safe_load((Path(__file__).resolve().parent.parent / "roles/base/defaults/main.yml").read_text()),
                **variables}
    blacklist = _render_role_template("base", "52nomadrig-unattended-upgrades.j2", defaults)
    pin = _render_role_template("nvidia_driver", "nomadrig-nvidia-driver.pref.j2", {
        **variables, "__nvidia_driver_debian_source_packages": ["nvidia-graphics-drivers"],
        "__nvidia_driver_debian_upstream_version": "535.261.03",
        "__nvidia_driver_debian_kernel_package": {"proprietary": "nvidia-kernel-dkms", "open": "x"},
        "nvidia_driver_kernel_modules": "proprietary", "__nvidia_driver_debian_module_candidate": "535.261.03-1",
        "nvidia_driver_branch": "535"})
    records = [block.splitlines()[-2:] for block in pin.split("\n\n")]
    if setting == "manual":
        assert '"^nvidia-";' in blacklist and '"^libcudnn";' in blacklist
        assert ["Pin: version 535.261.03-*", "Pin-Priority: 1001"] in records
    else:
        assert "^nvidia" not in blacklist and "Package-Blacklist {\n};" in blacklist
        assert all("1001" not in line for record in records for line in record)
        assert ["Pin: version 535.*", "Pin-Priority: 500"] in records
    assert ["Pin: version *", "Pin-Priority: -1"] in records
    assert variables["agent_reboot_when_pending"] is True
