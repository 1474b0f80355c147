"""A tower's power budget: what its GPUs and CPU draw, what the supply must deliver, and the GPU cap that fits.

One source of truth for the policy rule TWR-003 (`nomadrig validate`/`plan`), the variables the preflight
role checks on the tower, and the cap the nvidia_driver role applies with ``nvidia-smi --power-limit``.
Pure arithmetic, standard library only.
"""

from __future__ import annotations

from nomadrig.power.budget import GpuDraw, PowerBudget

__all__ = ["GpuDraw", "PowerBudget"]
