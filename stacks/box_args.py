"""What a box reads on either cloud: the fields both clouds' `BoxArgs` share.

Kept apart from `stacks.args` (which imports the cloud modules to build their
args) so that `aws.box` and `gcp.box` can build on it without an import cycle,
and free of any cloud SDK.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from nomadrig.volumes import DataSource


@dataclass(frozen=True)
class CommonBoxArgs:
    """A nomad's box as both clouds declare it; each cloud's `BoxArgs` adds its own fields.

    `user_data` renders the cloud-config for the data volume's device path, which the component
    names: on AWS the path follows from the volume's id, known only once the volume is declared.
    """

    team: str
    nomad: str  # in the identity's name and description, and the nomad's prefix of the dataset bucket
    region: str
    stack_name: str  # the instance's name (GCP) or Name tag (AWS)
    machine_type: str
    root_disk_gb: int
    data_disk_gb: int
    spot: bool
    allow_public_ip: bool
    user_data: Callable[[str], str]
    data: DataSource  # where the data volume comes from: new, kept by a `down`, a snapshot
