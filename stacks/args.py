"""From the team file to the components' Args: the one place the programs read the domain for a component.

Each component (`aws.network.TeamNetwork`, `aws.box.Box`, their GCP twins and
`tower.Tower`) takes a small frozen ``Args`` type holding exactly what it
reads, so a component never sees a `Team` or a `BoxSpec`, and what it declares
follows from its args alone (a component can be read, and tested, without a
team file). The functions here make those args from the validated `Team`, a
nomad's `BoxSpec` and the team network a box joins; the programs in
`stacks.program` call them, and so does the offline plan, through the same
``deploy_*`` functions.

Each function imports its component's module when called: the cloud SDKs
load only for a cloud the team uses.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nomadrig import names
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

    from nomadrig.spec import BoxSpec
    from nomadrig.team.model import Team


def aws_network_args(team: Team, region: str, primary: bool) -> AwsNetworkArgs:
    """The AWS team network of `region`; `primary`: the cloud's first region, the one that holds the budget."""
    from nomadrig.stacks.aws.network import TeamNetworkArgs

    return TeamNetworkArgs(team=team.name, region=region, tags=names.team_tags("aws", team.name),
                           allow_public_ip=team.policy.allow_public_ip, monthly_budget_usd=team.budgets.monthly_usd,
                           alert_emails=tuple(team.budgets.alert_emails),
                           create_budget=primary and bool(team.budgets.alert_emails))


def gcp_network_args(team: Team, region: str, primary: bool) -> GcpNetworkArgs:
    """The GCP team network of `region`; only the cloud's first region (`primary`) names the billing account."""
    from nomadrig.stacks.gcp.network import TeamNetworkArgs

    gcp_conf = team.clouds.gcp
    if gcp_conf is None:
        raise ValueError("clouds.gcp is not configured; add it to the team file to place boxes on GCP")
    return TeamNetworkArgs(team=team.name, project=gcp_conf.project, region=region,
                           labels=names.team_tags("gcp", team.name), monthly_budget_usd=team.budgets.monthly_usd,
                           alert_emails=tuple(team.budgets.alert_emails),
                           billing_account=gcp_conf.billing_account if primary else "")


def aws_box_args(team: Team, spec: BoxSpec, network: AwsNetworkRef, data: DataSource | None = None) -> AwsBoxArgs:
    """A nomad's AWS box in its team network; `data`: where its data volume comes from (None: a new one)."""
    from nomadrig.stacks.aws.box import DLAMI_PARAMETER, BoxArgs

    return BoxArgs(**_common_box_args(spec, "aws", data), spot_max_price=spec.spot_max_price, tags=spec.tags(),
                   ami_parameter=(team.clouds.aws.ami_parameter if team.clouds.aws else "") or DLAMI_PARAMETER,
                   network=network)


def gcp_box_args(team: Team, spec: BoxSpec, network: GcpNetworkRef, data: DataSource | None = None) -> GcpBoxArgs:
    """A nomad's GCP box in its team network; `data`: where its data disk comes from (None: a new one)."""
    from nomadrig.stacks.gcp.box import BoxArgs, BoxImage

    if not spec.project:
        raise ValueError(f"box {spec.nomad}: no GCP project; set clouds.gcp.project in the team file")
    return BoxArgs(**_common_box_args(spec, "gcp", data), project=spec.project,
                   accelerator_type=spec.accelerator_type, gpu_count=spec.gpu_count, labels=spec.labels(),
                   image=BoxImage.from_setting(team.clouds.gcp.image_family if team.clouds.gcp else "").image,
                   network=network)


def tower_args(team: Team, tower_name: str, *, ssh_key_file: str | None = None,
               overrides: Mapping[str, Any] | None = None, runs_dir: str | None = None,
               strict_host_keys: bool = True, project_root: Path | None = None) -> TowerArgs:
    """A tower of the team, reached as `nomadrig up TOWER --ssh-key KEY -e VAR=VALUE` says; hashes included.

    `project_root`: where roles/ and playbooks/ are (None: this installation's).
    """
    from nomadrig.stacks.tower import TowerArgs, roles_content_hash

    from nomadrig import paths, towers

    root = project_root or towers.PROJECT_ROOT
    options = {
        "ssh_key_file": ssh_key_file,
        "overrides": dict(overrides or {}),
        "runs_dir": runs_dir or str(paths.runs_dir()),
        "strict_host_keys": strict_host_keys,
        "project_root": str(root),
    }
    return TowerArgs(tower=tower_name, team=team.model_dump(mode="json"), **options,
                     content_hash=roles_content_hash(root), vars_hash=towers.tower_vars_hash(team, tower_name, options))


def _common_box_args(spec: BoxSpec, cloud: str, data: DataSource | None) -> dict[str, Any]:
    """The fields of `stacks.box_args.CommonBoxArgs`, from a spec for `cloud`."""
    if spec.cloud != cloud:
        raise ValueError(f"box {spec.nomad}: spec is for {spec.cloud}, not {cloud}")
    return {"team": spec.team, "nomad": spec.nomad, "region": spec.region, "stack_name": spec.stack_name,
            "machine_type": spec.machine_type, "root_disk_gb": spec.root_disk_gb, "data_disk_gb": spec.data_disk_gb,
            "spot": spec.spot, "allow_public_ip": spec.allow_public_ip,
            "user_data": functools.partial(render_user_data, spec), "data": data or DataSource.new()}
