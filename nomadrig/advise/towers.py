"""A catalog tower build as the TowerSpec nomadrig's tower rules check, so shipped builds meet the same bar."""

from __future__ import annotations

from nomadrig.catalog import TowerBuild
from nomadrig.spec import TowerGpuSpec, TowerSpec

#: The OS a reference build is assumed to run: one nomadrig supports (TWR-001).
BUILD_OS = "ubuntu-24.04"


def tower_spec(build: TowerBuild, team: str = "catalog") -> TowerSpec:
    """The build's declared hardware in the shape `policy.check_tower` reads (SSD root, encrypted data)."""
    return TowerSpec(
        team=team, name=build.name, address="192.0.2.1", ssh_user="admin", ssh_port=22, os=BUILD_OS,
        gpus=(TowerGpuSpec(build.gpu_model, build.gpu_count, build.gpu_tdp_w, build.gpu_vram_gb),),
        cpu_tdp_w=build.cpu_tdp_w, psu_watts=build.psu_w, ram_gb=build.ram_gb, disk_gb=build.disk_gb,
        root_on_ssd=True, data_encrypted=True, driver_channel="distro", driver_branch="550", cuda_version="12.4",
        frameworks=("pytorch",), gpu_containers=False, nomads=(), wireguard_port=51820)
