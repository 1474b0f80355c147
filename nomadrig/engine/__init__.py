"""The engine: the only code that talks to the Pulumi CLI (through its Automation API).

- `operations`: `Engine` (stack create/select, config and secrets, up, preview,
  destroy, outputs, reading the team's stacks, the kept volume in the stack's tags).
- `listing`: which stacks are the team's and what each is (`TeamStacks`), from what the engine read.
- `reaper_port`: `box_stacks`, the reaper's port onto the box stacks.
- `retained`: this machine's record of the volumes a `down` kept (``retained.json``).
- `stacks`: what the engine's stacks are (provider config, the programs, `TowerRun`, `StackStatus`).
- `settings`: which CLI, which backend, the work dir and the passphrase.
- `progress`: the live table of an update; `interrupt`: Ctrl-C while an update runs.

The Pulumi SDK is imported inside the functions that need it, so importing
this package stays cheap.
"""

from nomadrig.engine.listing import TeamStacks
from nomadrig.engine.operations import Engine, UpdateInterrupted, policy_pack_config
from nomadrig.engine.reaper_port import EngineBoxStacks, box_stacks
from nomadrig.engine.stacks import Programs, StackPrograms, StackStatus, TowerRun

__all__ = ["Engine", "EngineBoxStacks", "Programs", "StackPrograms", "StackStatus", "TeamStacks", "TowerRun",
           "UpdateInterrupted", "box_stacks", "policy_pack_config"]
