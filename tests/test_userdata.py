"""The box's cloud-init user data: what a nomad finds on a fresh box, and the limits it must respect."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from nomadrig.agent.bundle import agent_files
from nomadrig.spec import BoxSpec, box_spec
from nomadrig.team.load import load_team
from nomadrig.team.model import Team
from nomadrig.userdata import (
    EC2_USER_DATA_LIMIT,
    UserDataError,
    agent_config,
    gzip_user_data,
    gzipped_size,
    render_user_data,
    systemd_escape_path,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "team.yaml"
AWS_DEVICE = "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0"
GCP_DEVICE = "/dev/disk/by-id/google-data"


@pytest.fixture(scope="module")
def team() -> Team:
    return load_team(EXAMPLE)


@pytest.fixture(scope="module")
def ada(team: Team) -> BoxSpec:
    return box_spec(team, "ada")


def rendered(spec: BoxSpec, device: str = AWS_DEVICE) -> dict:
    text = render_user_data(spec, device)
    assert text.startswith("#cloud-config\n")
    return yaml.safe_load(text)


def files_of(config: dict) -> dict[str, dict]:
    return {entry["path"]: entry for entry in config["write_files"]}


def test_nomad_gets_an_account_with_their_key_and_sudo(ada: BoxSpec) -> None:
    config = rendered(ada)
    nomad = next(u for u in config["users"] if isinstance(u, dict) and u["name"] == "ada")
    assert nomad["ssh_authorized_keys"] == [ada.ssh_key]
    assert nomad["lock_passwd"] is True and "sudo" in nomad["groups"]
    assert config["timezone"] == "Europe/Berlin"


def unit_settings(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def test_data_volume_is_mounted_at_data_by_stable_id_with_nofail(ada: BoxSpec) -> None:
    mount = unit_settings(files_of(rendered(ada))["/etc/systemd/system/data.mount"]["content"])
    assert (mount["What"], mount["Where"], mount["Type"]) == (AWS_DEVICE, "/data", "ext4")
    assert "nofail" in mount["Options"].split(",")
    # Wanted by the device itself: mounted whenever the volume shows up, boot never waits for it.
    assert mount["WantedBy"] == systemd_escape_path(AWS_DEVICE) + ".device"
    assert mount["Requires"] == "nomadrig-data-format.service"


def test_mount_is_enabled_and_started_only_when_the_device_is_there(ada: BoxSpec) -> None:
    runcmd = rendered(ada)["runcmd"]
    assert ["systemctl", "enable", "data.mount"] in runcmd
    start = next(c for c in runcmd if "start --no-block data.mount" in " ".join(c))
    assert f"test ! -e {AWS_DEVICE} ||" in start[-1]


def test_data_volume_is_formatted_only_when_blkid_finds_nothing(ada: BoxSpec) -> None:
    script = files_of(rendered(ada))["/usr/local/sbin/nomadrig-format-data"]["content"]
    guard, mkfs = script.index("blkid -p"), script.index("mkfs.ext4")
    assert guard < mkfs and "exit 0" in script[guard:mkfs]


def test_format_service_runs_only_when_the_device_exists_and_before_the_mount(ada: BoxSpec) -> None:
    unit = unit_settings(files_of(rendered(ada))["/etc/systemd/system/nomadrig-data-format.service"]["content"])
    assert unit["ConditionPathExists"] == AWS_DEVICE
    assert unit["Before"] == "data.mount"
    assert unit["ExecStart"] == "/usr/local/sbin/nomadrig-format-data"


@pytest.mark.skipif(shutil.which("systemd-escape") is None, reason="systemd-escape is not installed")
@pytest.mark.parametrize("path", [AWS_DEVICE, GCP_DEVICE, "/dev/disk/by-id/odd.name+x:y"])
def test_device_unit_names_match_systemd_escape(path: str) -> None:
    expected = subprocess.run(["systemd-escape", "--path", path], capture_output=True, text=True, check=True)
    assert systemd_escape_path(path) == expected.stdout.strip()


def test_gpu_stack_is_held_and_blacklisted_from_unattended_upgrades(ada: BoxSpec) -> None:
    config = rendered(ada)
    files = files_of(config)
    assert "unattended-upgrades" in config["packages"]
    blacklist = files["/etc/apt/apt.conf.d/52nomadrig-gpu-stack"]["content"]
    assert '"nvidia-";' in blacklist and '"cuda-";' in blacklist
    assert ["/usr/local/sbin/nomadrig-hold-gpu-packages"] in config["runcmd"]


def test_idle_agent_is_installed_in_shutdown_mode_with_the_nomads_idle_minutes(ada: BoxSpec) -> None:
    config = rendered(ada)
    files = files_of(config)
    expected = {f.path for f in agent_files(agent_config(ada))}
    assert expected <= set(files)
    agent_json = yaml.safe_load(files["/etc/nomadrig/agent.json"]["content"])
    assert (agent_json["mode"], agent_json["idle_minutes"]) == ("shutdown", ada.idle_minutes)
    assert ["systemctl", "enable", "--now", "nomadrig-agent.timer"] in config["runcmd"]


def test_agent_idle_minutes_follow_the_spec(ada: BoxSpec) -> None:
    other = dataclasses.replace(ada, idle_minutes=25)
    agent_json = yaml.safe_load(files_of(rendered(other))["/etc/nomadrig/agent.json"]["content"])
    assert agent_json["idle_minutes"] == 25


def test_gcp_user_data_mounts_the_google_device(team: Team) -> None:
    grace = box_spec(team, "grace")
    mount = unit_settings(files_of(rendered(grace, GCP_DEVICE))["/etc/systemd/system/data.mount"]["content"])
    assert mount["What"] == GCP_DEVICE


def test_user_data_fits_ec2s_16_kb_limit_once_gzipped(ada: BoxSpec) -> None:
    text = render_user_data(ada, AWS_DEVICE)
    assert len(gzip_user_data(text)) == gzipped_size(text) <= EC2_USER_DATA_LIMIT


def test_user_data_over_ec2s_limit_is_refused_with_the_size() -> None:
    incompressible = "#cloud-config\n# " + os.urandom(EC2_USER_DATA_LIMIT).hex() + "\n"
    with pytest.raises(UserDataError, match="above EC2's 16384"):
        gzip_user_data(incompressible)


def test_odd_characters_in_a_key_comment_survive_yaml(ada: BoxSpec) -> None:
    key = ada.ssh_key.rsplit(" ", 1)[0] + ' "ada: #laptop\'s key" \\ x'
    config = rendered(dataclasses.replace(ada, ssh_key=key))
    assert config["users"][1]["ssh_authorized_keys"] == [key]


def test_a_device_that_is_not_a_dev_path_is_refused(ada: BoxSpec) -> None:
    with pytest.raises(UserDataError, match="not a /dev path"):
        render_user_data(ada, "vol-0123; rm -rf /")


@pytest.mark.parametrize("comment", [
    '"ada: #laptop\'s key" \\ x', "tab\there", "line\u2028separator", "next\x85line", "bom\ufeff", "emoji \U0001F600",
    "  leading and trailing  ", "- a dash", "? a question", "null", "'single quotes'", "caf\u00e9 \u6771\u4eac",
])
def test_user_data_text_is_the_one_pyyaml_itself_writes(ada: BoxSpec, comment: str) -> None:
    """Clouds compare user data byte for byte: were the faster emitter's text to differ from the one earlier
    releases wrote, every running box would be stopped and started on its next `up`."""
    key = ada.ssh_key.rsplit(" ", 1)[0] + " " + comment
    text = render_user_data(dataclasses.replace(ada, ssh_key=key), AWS_DEVICE)
    data = yaml.safe_load(text)
    assert data["users"][1]["ssh_authorized_keys"] == [key]
    assert text == "#cloud-config\n" + yaml.dump(data, Dumper=yaml.SafeDumper, sort_keys=False, width=2**31 - 1,
                                                 allow_unicode=False)
