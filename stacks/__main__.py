"""`pulumi up` / `pulumi preview` from the repository root (Pulumi.yaml: main: stacks/).

nomadrig's engine runs these programs inline through the Automation API; this
entry point is for running one stack by hand with the Pulumi CLI, e.g. with
`--policy-pack policypack`. It is the only place that reads Pulumi config, and
it reads just enough to find the validated inputs:

    pulumi config set nomadrig:team_file examples/team.yaml
    pulumi config set nomadrig:nomad ada                    # a box stack ...
    pulumi config set nomadrig:network_stack organization/nomadrig/vision-lab-net-aws-eu-west-1
    pulumi config set nomadrig:network aws/eu-west-1        # ... or a team network stack instead
"""

from __future__ import annotations

from pathlib import Path

import pulumi
from nomadrig.stacks.program import box_program, team_program

from nomadrig.config import load_team
from nomadrig.spec import box_spec


def main() -> None:
    config = pulumi.Config("nomadrig")
    team = load_team(Path(config.require("team_file")))
    network = config.get("network")
    nomad = config.get("nomad")
    if bool(network) == bool(nomad):
        raise ValueError("set exactly one of nomadrig:network (cloud/region, a team network stack) "
                         "or nomadrig:nomad (a box stack)")
    if network:
        cloud, _, region = network.partition("/")
        team_program(team, cloud, region)()
    else:
        spec = box_spec(team, nomad)
        box_program(team, spec, config.require("network_stack"))()


main()
