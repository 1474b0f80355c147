"""`pulumi up` / `pulumi preview` from the repository root (Pulumi.yaml: main: stacks/).

nomadrig's engine runs these programs inline through the Automation API; this
entry point is for running one stack by hand with the Pulumi CLI, e.g. with
`--policy-pack policypack`. It is the only place that reads Pulumi config, and
it reads just enough to find the validated inputs; it is also the only module
of the stacks that loads the team file, to resolve the one spec its program
takes (`nomadrig.spec`). Stack names are the engine's (`nomadrig.names`), so a
stack made by hand is the one `nomadrig` manages:

    pulumi stack init vision-lab--ada
    pulumi config set nomadrig:team_file examples/team.yaml
    pulumi config set nomadrig:nomad ada                     # a box stack ...
    pulumi config set nomadrig:created 2026-12-01T18:39Z     # ... created once: its TTL counts from here
    pulumi config set nomadrig:data_source kept:vol-0abc     # optional: new (default), kept:<id>, snapshot:<id>

    pulumi config set nomadrig:network aws/eu-west-1         # or a team network stack (vision-lab--net--aws--...)
    pulumi config set nomadrig:tower basement                # or a tower stack (vision-lab--tower--basement)

A box reads its team network through a stack reference to
``<org>/<project>/<team>--net--<cloud>--<region>`` (``nomadrig:network_stack``
overrides it). ``nomadrig:created`` is required for a box: a creation time
made anew on every run would rewrite the box's ``nomadrig:created`` tag,
restart its TTL and show a diff each time.
"""

from __future__ import annotations

from pathlib import Path

import pulumi
from nomadrig.stacks.program import box_program, team_program, tower_program

from nomadrig.names import network_stack_name
from nomadrig.spec import box_spec, network_spec, tower_spec
from nomadrig.team.load import load_team
from nomadrig.volumes import DataSource

KINDS = ("network", "nomad", "tower")


def main() -> None:
    config = pulumi.Config("nomadrig")
    team = load_team(Path(config.require("team_file")))
    chosen = {kind: config.get(kind) for kind in KINDS if config.get(kind)}
    if len(chosen) != 1:
        raise ValueError("set exactly one of nomadrig:network (cloud/region, a team network stack), "
                         "nomadrig:nomad (a box stack) or nomadrig:tower (a tower stack)")
    kind, value = next(iter(chosen.items()))
    if kind == "network":
        cloud, _, region = value.partition("/")
        team_program(network_spec(team, cloud, region))()
    elif kind == "tower":
        tower_program(tower_spec(team, value))()
    else:
        spec = box_spec(team, value, created=config.require("created"))
        network = config.get("network_stack") or "/".join((pulumi.get_organization(), pulumi.get_project(),
                                                            network_stack_name(team.name, spec.cloud, spec.region)))
        data = DataSource.from_output(config.get("data_source") or DataSource.NEW)
        if data is None:
            raise ValueError(f"nomadrig:data_source {config.get('data_source')!r}: "
                             "write new, kept:<volume id> or snapshot:<snapshot id>")
        box_program(spec, network, data)()


main()
