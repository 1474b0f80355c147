"""From the specs to the components' Args: the one place the programs read the domain for a component.

Each component (`aws.network.TeamNetwork`, `aws.box.Box`, their GCP twins and
`tower.Tower`) takes a small frozen ``Args`` type holding exactly what it
reads, so a component never sees a spec, and what it declares follows from
its args alone (a component can be read, and tested, without a team file).
The functions here make those args from the specs `nomadrig.spec` resolved
from the team file once (a `NetworkSpec`, a nomad's `BoxSpec` and the team
network a box joins, a `TowerSpec`); none of them sees the `Team`. The
programs in `stacks.program` call them, and so does the offline plan, through
the same ``deploy_*`` functions.

Each function imports its component's module when called: the cloud SDKs
load only for a cloud the team uses.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nomadrig.userdata import render_user_data
from nomadrig.volumes import DataSource

if TYPE_CHECKING:
    from nomadrig.stacks.aws.box import BoxArgs as AwsBoxArgs
    from nomadrig.stacks.aws.network import AwsNetworkRef
    from nomadrig.stacks.aws.network import TeamNetworkArgs as AwsNetworkArgs
    from nomadrig.stacks.gcp.box import BoxArgs as GcpBoxArgs
    from nomadrig.stacks.gcp.network import GcpNetworkRef
    from nomadrig.stacks.gcp.network import TeamNetworkArgs as GcpNetworkArgs
    from nomadrig.stacks.tower import TowerArgs

    from nomadrig.spec import BoxSpec, NetworkSpec, TowerSpec


def aws_network_args(spec: NetworkSpec) -> AwsNetworkArgs:
    """An AWS team network; only the cloud's first region (`spec.primary`) holds the budget."""
    from nomadrig.stacks.aws.network import TeamNetworkArgs

    _check_cloud(spec.cloud, "aws", f"team network {spec.region}")
    return TeamNetworkArgs(team=spec.team, region=spec.region, tags=spec.tags(),
                           allow_public_ip=spec.allow_public_ip, monthly_budget_usd=spec.monthly_budget_usd,
                           alert_emails=spec.alert_emails, create_budget=spec.primary and bool(spec.alert_emails))


def gcp_network_args(spec: NetworkSpec) -> GcpNetworkArgs:
    """A GCP team network; only the cloud's first region (`spec.primary`) names the billing account."""
    from nomadrig.stacks.gcp.network import TeamNetworkArgs

    _check_cloud(spec.cloud, "gcp", f"team network {spec.region}")
    if not spec.project:
        raise ValueError("clouds.gcp is not configured; add it to the team file to place boxes on GCP")
    return TeamNetworkArgs(team=spec.team, project=spec.project, region=spec.region,
                           labels=spec.labels(), monthly_budget_usd=spec.monthly_budget_usd,
                           alert_emails=spec.alert_emails,
                           billing_account=spec.billing_account if spec.primary else "")


def aws_box_args(spec: BoxSpec, network: AwsNetworkRef, data: DataSource | None = None) -> AwsBoxArgs:
    """A nomad's AWS box in its team network; `data`: where its data volume comes from (None: a new one)."""
    from nomadrig.stacks.aws.box import DLAMI_PARAMETER, BoxArgs

    return BoxArgs(**_common_box_args(spec, "aws", data), spot_max_price=spec.spot_max_price, tags=spec.tags(),
                   ami_parameter=spec.image or DLAMI_PARAMETER, network=network)


def gcp_box_args(spec: BoxSpec, network: GcpNetworkRef, data: DataSource | None = None) -> GcpBoxArgs:
    """A nomad's GCP box in its team network; `data`: where its data disk comes from (None: a new one)."""
    from nomadrig.stacks.gcp.box import BoxArgs, BoxImage

    if not spec.project:
        raise ValueError(f"box {spec.nomad}: no GCP project; set clouds.gcp.project in the team file")
    return BoxArgs(**_common_box_args(spec, "gcp", data), project=spec.project,
                   accelerator_type=spec.accelerator_type, gpu_count=spec.gpu_count, labels=spec.labels(),
                   image=BoxImage.from_setting(spec.image).image, network=network)


def tower_args(spec: TowerSpec, *, ssh_key_file: str | None = None,
               overrides: Mapping[str, Any] | None = None, runs_dir: str | None = None,
               strict_host_keys: bool = True, project_root: Path | None = None) -> TowerArgs:
    """A tower of the team, reached as `nomadrig up TOWER --ssh-key KEY -e VAR=VALUE` says; hashes included.

    `project_root`: where roles/ and playbooks/ are (None: this installation's).
    """
    from nomadrig.stacks.tower import TowerArgs, roles_content_hash

    from nomadrig import paths, towers

    if not spec.team_json:
        raise ValueError(f"tower {spec.name}: its spec holds no team file; make it with nomadrig.spec.tower_spec")
    root = project_root or towers.PROJECT_ROOT
    options = {
        "ssh_key_file": ssh_key_file,
        "overrides": dict(overrides or {}),
        "runs_dir": runs_dir or str(paths.runs_dir()),
        "strict_host_keys": strict_host_keys,
        "project_root": str(root),
    }
    return TowerArgs(tower=spec.name, team=dict(spec.team_json), **options, content_hash=roles_content_hash(root),
                     vars_hash=towers.tower_vars_hash(spec.team_json, spec.name, options))


def _common_box_args(spec: BoxSpec, cloud: str, data: DataSource | None) -> dict[str, Any]:
    """The fields of `stacks.box_args.CommonBoxArgs`, from a spec for `cloud`."""
    _check_cloud(spec.cloud, cloud, f"box {spec.nomad}")
    return {"team": spec.team, "nomad": spec.nomad, "region": spec.region, "stack_name": spec.stack_name,
            "machine_type": spec.machine_type, "root_disk_gb": spec.root_disk_gb, "data_disk_gb": spec.data_disk_gb,
            "spot": spec.spot, "allow_public_ip": spec.allow_public_ip,
            "user_data": functools.partial(render_user_data, spec), "data": data or DataSource.new()}


def _check_cloud(have: str, want: str, what: str) -> None:
    if have != want:
        raise ValueError(f"{what}: spec is for {have}, not {want}")
