"""The Pulumi programs nomadrig runs: what the engine, the offline plan and `pulumi up` all call.

API (stable; the engine's `StackPrograms` in `nomadrig/engine/stacks.py` depends on it)
------------------------------------------------------------------------------------

Every program takes specs that `nomadrig.spec` resolved from the team file once
(``NetworkSpec``, ``BoxSpec``, ``TowerSpec``), never the ``Team``.

Stacks
    ``nomadrig.spec.network_specs(team) -> list[NetworkSpec]``
        The team network stacks a team needs: one per (cloud, region) that at
        least one nomad uses, in team-file order; the first of a cloud's is its
        ``primary`` one (the budget lives there). ``network_spec(team, cloud, region)``
        resolves one.
    Network stacks are named ``NetworkSpec.stack_name`` (``"<team>--net--<cloud>--<region>"``,
    e.g. ``vision-lab--net--aws--eu-west-1``), box stacks ``BoxSpec.stack_name`` (``"<team>--<nomad>"``).
    Every stack name comes from `nomadrig.names`, which also parses them back.
    Deploy every team network stack before the box stacks of its region.

Programs (inline programs for ``auto.create_or_select_stack(program=...)``)
    ``team_program(spec: NetworkSpec) -> Callable[[], None]``
        Registers the ``nomadrig:<cloud>:TeamNetwork`` component and exports
        its outputs (keys: ``AWS_NETWORK_OUTPUTS`` / ``GCP_NETWORK_OUTPUTS``),
        plus ``team``, ``cloud``, ``region``.
        A team network holds no box identity: each box stack makes its own
        (an AWS role, a GCP service account) limited to its nomad's prefix of
        the team bucket, so ``service_account_email`` is a GCP *box* output,
        no longer a team network output.
    ``box_program(spec: BoxSpec, network, data=None) -> Callable[[], None]``
        Registers the ``nomadrig:<cloud>:Box`` component for ``spec`` and
        exports ``instance_id`` / ``data_volume_id`` / ``availability_zone`` /
        ``private_ip`` / ``role_name`` (AWS) or ``instance_name`` / ``zone`` /
        ``project`` / ``data_disk_name`` / ``instance_self_link`` /
        ``service_account_email`` (GCP), plus
        ``team``, ``nomad``, ``cloud``, ``region``, ``instance_type``,
        ``created``, ``ttl_hours``, ``spot``, ``data_source``. A GCP box's zone is the first
        zone of its region that is up (sorted), not always ``<region>-a``:
        read the ``zone`` output.
        ``network`` says where the team network's outputs come from, one of:
          - ``str``: a stack reference name (``"organization/nomadrig/<team>--net--aws--eu-west-1"``
            on the file backend, ``"<org>/nomadrig/<stack>"`` on Pulumi Cloud); read with
            ``pulumi.StackReference`` at deploy time;
          - ``Mapping[str, Any]``: the team stack's outputs as plain values
            (e.g. ``{k: v.value for k, v in stack.outputs().items()}`` from the Automation API);
          - an ``AwsNetworkRef`` / ``GcpNetworkRef`` (values or Outputs).
    ``tower_program(spec: TowerSpec, *, ssh_key_file=None, overrides=None, strict_host_keys=True)``
        Registers the ``nomadrig:tower:Tower`` component and exports
        ``tower_public_key``, ``changed_tasks``, ``run_dir``, ``team``, ``tower``, ``address``.
    ``deploy_team_network(spec: NetworkSpec)`` / ``deploy_box(spec: BoxSpec, network_ref, data=None)``
        The components alone, without exports: what the offline plan registers.

Each component takes its ``Args`` (`stacks.args` makes them from the specs),
never a spec itself.

No program reads Pulumi config: every input comes from its spec through the
args. Each box and network component makes its own explicit provider for its
region (and GCP project) from its spec, so nothing in these stacks uses the
config the engine sets on them (``aws:region``, or ``gcp:project`` and
``gcp:region``: `nomadrig.engine.stacks.cloud_config`, which the engine makes
from the same spec's cloud, region and project); that config is for the default
provider, which only the engine's purge stack uses. Tower stacks get no config.
Credentials come from the environment as usual. Only ``stacks/__main__.py`` (a
stack run by hand) reads config: the ``nomadrig:*`` keys that name the inputs;
it loads the team file and resolves the specs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from nomadrig.stacks import args

if TYPE_CHECKING:
    import pulumi
    from nomadrig.stacks.aws.network import AwsNetworkRef
    from nomadrig.stacks.gcp.network import GcpNetworkRef

    from nomadrig.spec import BoxSpec, NetworkSpec, TowerSpec
    from nomadrig.volumes import DataSource

    NetworkSource = str | Mapping[str, Any] | AwsNetworkRef | GcpNetworkRef

AWS_NETWORK_OUTPUTS = ("vpc_id", "subnet_ids", "availability_zones", "security_group_id", "kms_key_arn",
                       "bucket_name", "bucket_arn")
GCP_NETWORK_OUTPUTS = ("network_self_link", "subnetwork_self_link", "kms_key_id", "bucket_name", "network_tag")


def deploy_team_network(spec: NetworkSpec, opts: pulumi.ResourceOptions | None = None) -> Any:
    """Register the team network component (no exports); the plan calls this directly."""
    if spec.cloud == "aws":
        from nomadrig.stacks.aws.network import TeamNetwork as AwsTeamNetwork

        return AwsTeamNetwork(f"{spec.team}-{spec.region}", args.aws_network_args(spec), opts)
    if spec.cloud == "gcp":
        from nomadrig.stacks.gcp.network import TeamNetwork as GcpTeamNetwork

        return GcpTeamNetwork(f"{spec.team}-{spec.region}", args.gcp_network_args(spec), opts)
    raise ValueError(f"unknown cloud {spec.cloud!r}: use aws or gcp")


def network_ref(cloud: str, source: NetworkSource) -> AwsNetworkRef | GcpNetworkRef:
    """Turn any accepted network source into the typed reference a Box takes."""
    from nomadrig.stacks.aws.network import AwsNetworkRef
    from nomadrig.stacks.gcp.network import GcpNetworkRef

    ref_type = AwsNetworkRef if cloud == "aws" else GcpNetworkRef
    if isinstance(source, ref_type):
        return source
    if isinstance(source, AwsNetworkRef | GcpNetworkRef):
        raise TypeError(f"a {type(source).__name__} cannot serve a {cloud} box")
    if isinstance(source, str):
        import pulumi

        stack = pulumi.StackReference(source)
        return ref_type.from_outputs(lambda key: stack.require_output(key))
    if isinstance(source, Mapping):
        missing = [k for k in (AWS_NETWORK_OUTPUTS if cloud == "aws" else GCP_NETWORK_OUTPUTS) if k not in source]
        if missing:
            raise KeyError(f"team network outputs lack {', '.join(missing)}; deploy the team stack first")
        return ref_type.from_outputs(source.__getitem__)
    raise TypeError(f"network source must be a stack name, an outputs mapping or a network ref, not {source!r}")


def deploy_box(spec: BoxSpec, network: AwsNetworkRef | GcpNetworkRef,
               opts: pulumi.ResourceOptions | None = None, data: DataSource | None = None) -> Any:
    """Register the box component (no exports); the plan calls this directly.

    `data`: where the data volume comes from (`nomadrig.volumes.DataSource`); None is a new one.
    """
    if spec.cloud == "aws":
        from nomadrig.stacks.aws.box import Box as AwsBox

        return AwsBox(spec.nomad, args.aws_box_args(spec, network, data), opts)  # type: ignore[arg-type]
    if spec.cloud == "gcp":
        from nomadrig.stacks.gcp.box import Box as GcpBox

        return GcpBox(spec.nomad, args.gcp_box_args(spec, network, data), opts)  # type: ignore[arg-type]
    raise ValueError(f"unknown cloud {spec.cloud!r}: use aws or gcp")


def team_program(spec: NetworkSpec) -> Callable[[], None]:
    """The inline program of one team network stack."""

    def program() -> None:
        import pulumi

        network = deploy_team_network(spec)
        for key, value in network.outputs().items():
            pulumi.export(key, value)
        pulumi.export("team", spec.team)
        pulumi.export("cloud", spec.cloud)
        pulumi.export("region", spec.region)

    return program


def box_program(spec: BoxSpec, network: NetworkSource,
                data: DataSource | None = None) -> Callable[[], None]:
    """The inline program of one nomad's box stack.

    `data` says where the data volume comes from: None or ``new`` declares a
    new one, ``kept`` reads and attaches the volume an earlier box left (no
    new volume), ``snapshot`` declares a new one from that snapshot. The
    choice is exported as ``data_source`` so the next `up` repeats it.
    """
    from nomadrig.volumes import DataSource

    data = data or DataSource.new()

    def program() -> None:
        import pulumi

        box = deploy_box(spec, network_ref(spec.cloud, network), data=data)
        for key, value in box.outputs().items():
            pulumi.export(key, value)
        for key, value in (("team", spec.team), ("nomad", spec.nomad), ("cloud", spec.cloud),
                           ("region", spec.region), ("instance_type", spec.instance_type),
                           ("created", spec.created), ("ttl_hours", spec.ttl_hours), ("spot", spec.spot),
                           ("data_source", data.as_output())):
            pulumi.export(key, value)

    return program


def tower_program(spec: TowerSpec, *, ssh_key_file: str | None = None,
                  overrides: Mapping[str, Any] | None = None, strict_host_keys: bool = True) -> Callable[[], None]:
    """The inline program of one tower stack: the `Tower` component and what `ls`/`outputs` show of it.

    `ssh_key_file` and `overrides` are what `nomadrig up TOWER --ssh-key KEY -e VAR=VALUE` passed.
    """

    def program() -> None:
        import pulumi
        from nomadrig.stacks.tower import Tower

        tower = Tower(spec.name, args.tower_args(spec, ssh_key_file=ssh_key_file, overrides=overrides,
                                                 strict_host_keys=strict_host_keys))
        pulumi.export("tower_public_key", tower.tower_public_key)
        pulumi.export("changed_tasks", tower.configuration.changed_tasks)
        pulumi.export("run_dir", tower.configuration.run_dir)  # where the last run's report.json and logs are
        for key, value in (("team", spec.team), ("tower", spec.name), ("address", spec.address)):
            pulumi.export(key, value)

    return program
