"""Pulumi programs for cloud boxes: one team network stack per cloud and region, one box stack per nomad.

`nomadrig.stacks.program` is the entry point the engine, the offline plan and
`stacks/__main__.py` share; `aws` and `gcp` hold the components, `tower` the
tower's; `args` makes each component's Args from the specs `nomadrig.spec`
resolves from the team file (only `__main__` sees the team file itself).
Nothing here imports a cloud SDK at package import time, so importing
the package stays cheap for the CLI.
"""

# modules: each is imported where it is used
__all__ = ["args", "aws", "box_args", "gcp", "mocks", "program", "record", "tower"]
