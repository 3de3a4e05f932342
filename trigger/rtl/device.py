"""The target device as the RTL backend needs it: yosys's `synth_xilinx -family` and the delay model that
turns the configured clock into da4ml's pipelining cutoff.

da4ml measures delay in its own units: with `HWConfig(adder_size=1, carry_size=-1)` every adder (and every
mux) counts one level, a lookup table `max(address bits - 6, 1)` levels, a variable x variable product one
level per bit of the narrower operand. `to_pipeline` then cuts the logic into stages of at most
`latency_cutoff` levels. Its default cutoff counts levels without a clock, so it is derived here from the
clock: the clock period less the clock uncertainty (10 % of the period, as da4ml's XDC template constrains
it) and the register's clock-to-out plus setup, divided by the delay of one level (LUT, short carry chain,
local routing) on the part's family. The resulting cycle count is exact for the generated RTL; whether each
stage meets the clock after place and route is not proven here (Vivado's timing report is).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from trigger.errors import InputError

CLOCK_UNCERTAINTY = 0.1  # fraction of the period: da4ml's template.xdc sets the same


@dataclass(frozen=True)
class Family:
    """A device family: yosys's name for it and its delay model."""

    yosys: str  # synth_xilinx -family
    name: str
    level_ns: float  # one adder level: LUT, carry chain of a ~20-bit adder, local routing
    register_ns: float  # flip-flop clock-to-out plus setup

    def levels_per_stage(self, clock_period_ns: float) -> int:
        """Adder levels that fit one clock cycle (at least one: a stage cannot be empty)."""
        usable = clock_period_ns * (1.0 - CLOCK_UNCERTAINTY) - self.register_ns
        return max(1, math.floor(usable / self.level_ns + 1e-9))

    def derivation(self, clock_period_ns: float) -> str:
        """How `levels_per_stage` was reached, for the report and the firmware README."""
        return (f"{self.levels_per_stage(clock_period_ns)} adder levels per stage = floor(({clock_period_ns:g} ns "
                f"x (1 - {CLOCK_UNCERTAINTY:g} clock uncertainty) - {self.register_ns:g} ns register) / "
                f"{self.level_ns:g} ns per level) on {self.name}")


FAMILIES = {
    "xcup": Family("xcup", "UltraScale+", level_ns=0.8, register_ns=0.2),
    "xcu": Family("xcu", "UltraScale", level_ns=0.9, register_ns=0.25),
    "xc7": Family("xc7", "7-series", level_ns=1.1, register_ns=0.3),
}


def family_of(part: str) -> Family:
    """The family of a Xilinx part name (the parts trigger's estimator knows, and their relatives)."""
    p = part.strip().lower()
    if p.startswith("xc7"):
        return FAMILIES["xc7"]
    m = re.match(r"xc(vu|ku)\d+(p?)", p)
    if m:
        return FAMILIES["xcup" if m.group(2) else "xcu"]
    if re.match(r"xc(zu|au|u\d|k26)", p):  # Zynq UltraScale+, Artix UltraScale+, Alveo
        return FAMILIES["xcup"]
    raise InputError(f"part {part!r}: the RTL backend knows Xilinx 7-series, UltraScale and UltraScale+ parts")
