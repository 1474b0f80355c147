"""The team networks a team gets (`nomadrig.spec.network_specs`): one per cloud and region a nomad uses.

Each costs money (a NAT, a key, a bucket), so a region nobody uses gets none, and
account-wide things (the budget) live in exactly one network per cloud: the first
region of that cloud a nomad uses, in team-file order.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nomadrig.names import network_stack_name
from nomadrig.spec import box_spec, network_spec, network_specs
from nomadrig.team.load import load_team
from nomadrig.team.model import Team

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "team.yaml"
BILLING = "012345-6789AB-CDEF01"


@pytest.fixture(scope="module")
def example() -> Team:
    return load_team(EXAMPLE)


def team_placing(example: Team, *places: tuple[str | None, str | None]) -> Team:
    """The example team with one nomad per (cloud, region), in that order; None: the nomad names none."""
    like = example.nomads[0]
    nomads = [like.model_copy(update={"name": f"n{i}", "cloud": cloud, "region": region})
              for i, (cloud, region) in enumerate(places)]
    assert example.clouds.gcp is not None
    gcp = example.clouds.gcp.model_copy(update={"billing_account": BILLING})
    return example.model_copy(update={"nomads": nomads, "clouds": example.clouds.model_copy(update={"gcp": gcp})})


def test_one_network_per_cloud_and_region_in_the_order_nomads_first_use_them(example: Team) -> None:
    team = team_placing(example, ("aws", "eu-west-1"), ("gcp", "europe-west4"), ("aws", "us-east-1"),
                        ("aws", "eu-west-1"), ("gcp", "us-central1"), ("gcp", "europe-west4"))
    assert [(n.cloud, n.region) for n in network_specs(team)] == [
        ("aws", "eu-west-1"), ("gcp", "europe-west4"), ("aws", "us-east-1"), ("gcp", "us-central1")]


def test_a_region_the_team_allows_but_no_nomad_uses_gets_no_network(example: Team) -> None:
    team = team_placing(example, ("aws", "eu-west-1"))
    assert [(n.cloud, n.region) for n in network_specs(team)] == [("aws", "eu-west-1")]
    assert network_specs(team_placing(example)) == [], "a team of towers only needs no cloud network"


def test_a_nomad_naming_no_cloud_or_region_shares_the_network_of_the_teams_first_ones(example: Team) -> None:
    team = team_placing(example, ("aws", "us-east-1"), (None, None))
    assert [(n.cloud, n.region) for n in network_specs(team)] == [("aws", "us-east-1")]


def test_only_the_first_region_of_each_cloud_is_primary(example: Team) -> None:
    team = team_placing(example, ("gcp", "europe-west4"), ("aws", "us-east-1"), ("gcp", "us-central1"),
                        ("aws", "eu-west-1"))
    primary = {(n.cloud, n.region): n.primary for n in network_specs(team)}
    assert primary == {("gcp", "europe-west4"): True, ("aws", "us-east-1"): True,
                       ("gcp", "us-central1"): False, ("aws", "eu-west-1"): False}
    assert not network_spec(team, "aws", "us-west-2").primary, "a region no nomad uses holds no budget"


def test_the_budget_lives_in_the_primary_network_of_each_cloud_only(example: Team) -> None:
    from nomadrig.stacks.args import aws_network_args, gcp_network_args

    team = team_placing(example, ("aws", "eu-west-1"), ("gcp", "us-central1"), ("aws", "us-east-1"),
                        ("gcp", "europe-west4"))
    budgets = {(n.cloud, n.region): aws_network_args(n).create_budget if n.cloud == "aws"
               else gcp_network_args(n).billing_account for n in network_specs(team)}
    assert budgets == {("aws", "eu-west-1"): True, ("aws", "us-east-1"): False,
                       ("gcp", "us-central1"): BILLING, ("gcp", "europe-west4"): ""}


def test_a_network_spec_carries_the_team_settings_its_stack_declares(example: Team) -> None:
    team = team_placing(example, ("aws", "eu-west-1"), ("gcp", "us-central1"))
    aws, gcp = network_specs(team)
    assert (aws.team, aws.stack_name) == ("vision-lab", network_stack_name("vision-lab", "aws", "eu-west-1"))
    assert (aws.monthly_budget_usd, aws.alert_emails) == (6000, ("finance@vision-lab.example",))
    assert aws.allow_public_ip is False
    assert (aws.project, aws.billing_account) == ("", ""), "GCP settings stay on GCP networks"
    assert (gcp.project, gcp.billing_account) == ("vision-lab-research", BILLING)


@pytest.mark.parametrize("nomad, setting", [("ada", "ami_parameter"), ("grace", "image_family")])
def test_a_box_spec_carries_its_own_clouds_image_setting(example: Team, nomad: str, setting: str) -> None:
    assert example.clouds.aws is not None and example.clouds.gcp is not None
    clouds = example.clouds.model_copy(update={
        "aws": example.clouds.aws.model_copy(update={"ami_parameter": "/vision-lab/box-ami"}),
        "gcp": example.clouds.gcp.model_copy(update={"image_family": "common-cu129-ubuntu-2204-nvidia-580"})})
    team = example.model_copy(update={"clouds": clouds})
    expected = {"ami_parameter": "/vision-lab/box-ami", "image_family": "common-cu129-ubuntu-2204-nvidia-580"}
    assert box_spec(team, nomad).image == expected[setting]
    assert box_spec(example, nomad).image == "", "no setting: the stacks' default image"
