"""The box user data, validated and applied by real cloud-init on a booted Debian 12 (NoCloud seed).

The container stands in for a fresh box: cloud-init reads the seed at
``/var/lib/cloud/seed/nocloud``, creates the nomad, writes the agent and the
``/data`` plumbing, installs unattended-upgrades through the test proxy. The
data volume does not exist in a container, which is the case to prove: the
mount unit is generated with ``nofail`` and the boot still finishes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from nomadrig.stacks.aws.box import data_device_path as aws_device_path
from nomadrig.stacks.gcp.box import data_device_path as gcp_device_path

from nomadrig.spec import BoxSpec, box_spec
from nomadrig.team.load import load_team
from nomadrig.userdata import render_user_data
from tests.harness import ContainerSpec, DebianContainer

pytestmark = pytest.mark.container

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "team.yaml"
# cloud-init, plus what a cloud image has and debootstrap does not resolve: the cffi backend that
# python3-cryptography needs, and locales (cloud-init runs update-locale).
CLOUD_INIT_PACKAGES = ("cloud-init", "python3-cffi-backend", "locales")
SEED_PATH = "/var/lib/cloud/seed/nocloud/user-data"


def box_for(cloud: str) -> tuple[BoxSpec, str]:
    team = load_team(EXAMPLE)
    nomad = next(n.name for n in team.nomads if team.nomad_cloud(n) == cloud)
    spec = box_spec(team, nomad)
    device = aws_device_path("vol-0123456789abcdef0") if cloud == "aws" else gcp_device_path()
    return spec, device


def check_schema(container: DebianContainer) -> None:
    result = container.run(f"cloud-init schema --config-file {SEED_PATH}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid cloud-config" in result.stdout


def check_nomad(container: DebianContainer, spec: BoxSpec) -> None:
    assert "sudo" in container.run(f"id -nG {spec.nomad}", check=True).stdout.split()
    keys = container.run(f"cat /home/{spec.nomad}/.ssh/authorized_keys", check=True).stdout
    assert spec.ssh_key in keys
    zone = container.run("readlink /etc/localtime", check=True).stdout.strip()
    assert zone.endswith(spec.timezone)


def check_data_mount(container: DebianContainer, device: str) -> None:
    assert container.run(f"test -e {device}").returncode != 0, "the container has no data volume"
    shown = container.run("systemctl show data.mount -p What -p Where -p Options -p Before -p LoadState",
                          check=True).stdout
    props = dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)
    assert props["LoadState"] == "loaded", shown
    assert (props["What"], props["Where"]) == (device, "/data"), shown
    assert "nofail" in props["Options"].split(","), shown
    assert "local-fs.target" not in props["Before"].split(), "boot would wait for the data volume"
    assert container.run("systemctl is-enabled data.mount").stdout.strip() == "enabled"
    state = container.run("systemctl is-system-running --wait", timeout=180).stdout.strip()
    assert state in ("running", "degraded"), container.run("systemctl --failed").stdout
    assert container.run("systemctl is-failed data.mount").stdout.strip() != "failed"
    assert container.run("systemctl --failed --no-legend --plain").stdout.strip() == ""


def check_agent(container: DebianContainer, spec: BoxSpec) -> None:
    assert container.run("systemctl is-active nomadrig-agent.timer").stdout.strip() == "active"
    config = container.run("cat /etc/nomadrig/agent.json", check=True).stdout
    assert '"mode": "shutdown"' in config and f'"idle_minutes": {spec.idle_minutes}' in config


def check_upgrades(container: DebianContainer) -> None:
    assert container.run("dpkg-query -W -f '${Status}' unattended-upgrades").stdout == "install ok installed"
    dump = container.run("apt-config dump Unattended-Upgrade::Package-Blacklist", check=True).stdout
    assert '"nvidia-"' in dump and '"cuda-"' in dump, dump
    assert 'APT::Periodic::Unattended-Upgrade "1"' in container.run("apt-config dump APT::Periodic").stdout


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_cloud_init_applies_the_box_user_data_on_debian_12(cloud: str, boot_container) -> None:
    """One boot per cloud (each installs packages): schema, nomad, /data, agent, upgrades."""
    spec, device = box_for(cloud)
    seed = {"user-data": render_user_data(spec, device),
            "meta-data": f"instance-id: nomadrig-test-{cloud}\nlocal-hostname: {spec.stack_name}\n"}
    container = boot_container(ContainerSpec(release="bookworm", extra_packages=CLOUD_INIT_PACKAGES,
                                             nocloud_seed=seed), timeout=180)
    status = container.run("cloud-init status --wait --long", timeout=600)
    if "status: done" not in status.stdout:
        errors = container.run("grep -E 'WARNING|ERROR|Traceback' /var/log/cloud-init.log | tail -n 30").stdout
        pytest.fail(f"cloud-init did not finish cleanly:\n{status.stdout}\n{errors}")
    check_schema(container)
    check_nomad(container, spec)
    check_data_mount(container, device)
    check_agent(container, spec)
    check_upgrades(container)
