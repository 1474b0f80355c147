"""The power budget of one tower, and the largest per-GPU power cap that keeps it inside its supply.

A GPU's board power under training load is its TDP (the catalog's `tdp_w`, from the vendor's data
sheet); ``nvidia-smi --power-limit`` caps it lower, and the card then never draws more than the cap.
The supply must deliver the GPUs' draw plus the CPU's TDP plus a margin for load spikes
(``policy.psu_margin_pct``). The same integer arithmetic runs in the preflight role (Jinja), so both
round the need up to a whole watt.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GpuDraw:
    """``count`` cards of one model, each drawing up to ``tdp_w`` watts uncapped."""

    model: str
    count: int
    tdp_w: int


@dataclass(frozen=True)
class PowerBudget:
    psu_w: int
    cpu_w: int
    margin_pct: int
    gpus: tuple[GpuDraw, ...]
    #: The per-GPU power cap in watts (``nvidia-smi --power-limit``); None: the cards run at their TDP.
    cap_w: int | None = None

    def gpu_w(self, cap_w: int | None = None) -> int:
        """What the GPUs draw at most, each at its TDP or the cap, whichever is lower."""
        cap = self.cap_w if cap_w is None else cap_w
        return sum(g.count * (g.tdp_w if cap is None else min(g.tdp_w, cap)) for g in self.gpus)

    def needed_w(self, cap_w: int | None = None) -> int:
        """The supply's rating this load needs: GPUs plus CPU, plus the margin, rounded up to a watt."""
        load = self.gpu_w(cap_w) + self.cpu_w
        return -(-load * (100 + self.margin_pct) // 100)  # ceiling in integers, as the preflight role computes it

    @property
    def fits(self) -> bool:
        return self.psu_w >= self.needed_w()

    def largest_cap_that_fits(self) -> int | None:
        """The highest per-GPU cap in whole watts with which the supply covers the load; None when none does.

        None also when the GPUs are not what overloads the supply: with no GPU, or when even a cap of one
        watt leaves the CPU and the margin above the rating.
        """
        if not self.gpus:
            return None
        highest_tdp = max(g.tdp_w for g in self.gpus)
        if self.psu_w >= self.needed_w(highest_tdp):
            return highest_tdp
        low, high = 0, highest_tdp  # needed_w grows with the cap: find the last cap that fits
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if self.psu_w >= self.needed_w(middle) else (low, middle)
        return low or None

    def describe(self) -> str:
        """'2 x RTX 4090 at 450 W (capped at 300 W) + CPU 125 W = 725 W, plus 20% margin = 870 W'."""
        gpus = " + ".join(f"{g.count} x {g.model} at {g.tdp_w} W" for g in self.gpus)
        if gpus and self.cap_w is not None:
            gpus += f" (capped at {self.cap_w} W each: {self.gpu_w()} W)"
        load = " + ".join([*([gpus] if gpus else []), f"CPU {self.cpu_w} W"])
        return (f"{load} = {self.gpu_w() + self.cpu_w} W, "
                f"plus {self.margin_pct}% margin = {self.needed_w()} W")
