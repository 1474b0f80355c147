"""Pulumi programs for cloud boxes: one team network stack per cloud and region, one box stack per nomad.

`nomadrig.stacks.program` is the entry point the engine, the offline plan and
`stacks/__main__.py` share; `aws` and `gcp` hold the components.
Nothing here imports a cloud SDK at package import time, so importing
the package stays cheap for the CLI.
"""

__all__ = ["aws", "gcp", "mocks", "program", "record", "tower"]  # modules: each is imported where it is used
