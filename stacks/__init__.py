"""Pulumi programs for cloud boxes: one team network stack per cloud and region, one box stack per nomad.

`stacks.program` is the entry point the engine, the offline plan and
`stacks/__main__.py` share; `stacks.aws` and `stacks.gcp` hold the components.
Nothing here imports a cloud SDK at package import time, so `import stacks`
stays cheap for the CLI.
"""
