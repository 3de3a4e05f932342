"""The design: one typed fixed-point representation of a compiled trigger, from which the emulator, the
estimate and the RTL backend are derived and against which the HLS C simulation is checked.

`lower(hls_model)` builds it from hls4ml's graph, `Design.save/load` keep it in the project
(`design.json`), `run(design, x)` is the exact interpreter.
"""

from trigger.design import softmax, spanet  # noqa: F401  (they register their lowerings and kernels)
from trigger.design.fixed import Fx, quantize
from trigger.design.graph import Design, Op, Tensor
from trigger.design.interpret import run
from trigger.design.lower import lower

__all__ = ["Design", "Fx", "Op", "Tensor", "lower", "quantize", "run"]
