"""hls4ml's table softmax (`stable` and `latency` implementations, io_parallel) in the design.

The exp and 1/x tables are built by the firmware's own C++ (`nnet::init_exp_table` / `init_invert_table`,
which evaluate `std::exp` in float): lowering compiles a ten-line program against the project's
`parameters.h` and reads the tables it prints, so the design holds the very values the C simulation uses,
whatever the C library's `expf` rounds to. The kernel then replays the template: the max, the distances to it,
the table addresses sliced from the top bits, the adder tree of `nnet::reduce`, the products.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trigger.design.fixed import Fx, quantize, raw_bits
from trigger.design.interpret import kernel
from trigger.design.lower import Context, lowering
from trigger.errors import InputError

if TYPE_CHECKING:
    from trigger.design.graph import Op

IMPLEMENTATIONS = ("stable", "latency")
_TYPE_RE = r"typedef\s+(ap_u?fixed<[^>]*>)\s+{name}\s*;"

DUMPER = """\
#include <cstdio>
#include "defines.h"
#include "parameters.h"
typedef {config} C;
static C::exp_table_t exp_table[C::exp_table_size];
static C::inv_table_t inv_table[C::inv_table_size];
int main() {{
    nnet::init_exp_table<{address_t}, C>(exp_table, {negative});
    nnet::init_invert_table<C::inv_inp_t, C>(inv_table);
    for (unsigned i = 0; i < C::exp_table_size; i++) std::printf("%.17g\\n", exp_table[i].to_double());
    for (unsigned i = 0; i < C::inv_table_size; i++) std::printf("%.17g\\n", inv_table[i].to_double());
    return 0;
}}
"""


def _parse_fx(cpp: str) -> Fx:
    """`ap_ufixed<15, 4>` or `ap_fixed<18,8,AP_RND,AP_SAT>` -> Fx."""
    match = re.fullmatch(r"ap_(u?)fixed<\s*(\d+)\s*,\s*(-?\d+)\s*(?:,\s*AP_(\w+)\s*)?(?:,\s*AP_(\w+)\s*)?>",
                         cpp.strip())
    if match is None:
        raise InputError(f"cannot read the fixed-point type {cpp!r}")
    unsigned, width, integer, rounding, overflow = match.groups()
    return Fx(int(width), int(integer), not unsigned, rounding or "TRN", overflow or "WRAP")


def _tables(project: Path, config_name: str, address_t: str, negative: bool, sizes: tuple[int, int]
            ) -> tuple[np.ndarray, np.ndarray]:
    """The exp and inverse tables as the firmware's C++ computes them."""
    compiler = shutil.which("g++")
    if compiler is None:
        raise InputError("g++ not found: it is needed to read hls4ml's softmax tables")
    firmware = project / "firmware"
    with tempfile.TemporaryDirectory(prefix="trigger-softmax-") as tmp:
        source, binary = Path(tmp) / "dump.cpp", Path(tmp) / "dump"
        source.write_text(DUMPER.format(config=config_name, address_t=address_t,
                                        negative="true" if negative else "false"))
        build = subprocess.run([compiler, "-O0", "-std=c++14", f"-I{firmware}", f"-I{firmware / 'ap_types'}",
                                f'-DWEIGHTS_DIR="{firmware / "weights"}"', "-o", str(binary), str(source)],
                               capture_output=True, text=True, check=False)
        if build.returncode != 0:
            raise InputError(f"softmax table dump did not compile: {(build.stderr.strip().splitlines() or ['?'])[-1]}")
        out = subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout.split()
    values = np.array([float(v) for v in out])
    if values.size != sum(sizes):
        raise InputError(f"softmax table dump printed {values.size} values, expected {sum(sizes)}")
    return values[:sizes[0]], values[sizes[0]:]


@lowering("Softmax")
def _softmax(layer: Any, ctx: Context) -> Op:
    from trigger.design.graph import Op

    implementation = str(layer.get_attr("implementation", "stable")).lower()
    if implementation not in IMPLEMENTATIONS:
        raise InputError(f"layer {layer.name!r}: softmax implementation {implementation!r} is not lowered "
                         f"({', '.join(IMPLEMENTATIONS)} are)")
    if int(layer.get_attr("n_outer", 1)) != 1 or int(layer.get_attr("n_inner", 1)) != 1:
        raise InputError(f"layer {layer.name!r}: only a softmax over the last axis of a vector is lowered")
    config_cpp = str(layer.get_attr("config_cpp"))
    config_name = re.search(r"struct\s+(\w+)\s*:", config_cpp).group(1)
    exp_scale = float(re.search(r"exp_scale\s*=\s*([-+0-9.eE]+)", config_cpp).group(1))
    if exp_scale != 1.0:
        raise InputError(f"layer {layer.name!r}: softmax exp_scale {exp_scale} is not lowered")
    in_t = ctx.fx(layer.get_input_variable(layer.inputs[0]))
    types = {"exp_table": ctx.fx(layer.get_attr("exp_table_t")), "inv_table": ctx.fx(layer.get_attr("inv_table_t")),
             "accum": ctx.fx(layer.get_attr("accum_t")), "inv_inp": ctx.fx(layer.get_attr("inv_inp_t"))}
    if implementation == "stable":
        types["inp_norm"] = _parse_fx(re.search(_TYPE_RE.format(name="inp_norm_t"), config_cpp).group(1))
    size = int(layer.get_attr("table_size"))
    exp_table, inv_table = _tables(ctx.project, config_name,
                                   "C::inp_norm_t" if implementation == "stable" else in_t.cpp(),
                                   implementation == "stable", (size, size))
    return Op(kind="softmax", name=layer.name, inputs=ctx.inputs(layer), output=ctx.output(layer), types=types,
              weights={"exp_table": exp_table, "inv_table": inv_table},
              weight_types={"exp_table": types["exp_table"], "inv_table": types["inv_table"]},
              attrs={"implementation": implementation, "table_size": size},
              source=f"{layer.class_name} {layer.name!r}")


def _address(values: np.ndarray, t: Fx, size: int) -> np.ndarray:
    """`softmax_idx_from_real_val`: the top ceil(log2(size)) bits of the value's bit pattern."""
    bits = math.ceil(math.log2(size))
    return raw_bits(values, t) >> (t.width - bits)


def adder_tree(x: np.ndarray, t: Fx) -> np.ndarray:
    """`nnet::reduce` with `Op_add<t>` over the last axis: its split, every partial sum cast to `t`."""
    n = x.shape[-1]
    if n == 1:
        return x[..., 0]
    if n == 2:
        return quantize(x[..., 0] + x[..., 1], t)
    left = 2 ** math.floor(math.log2(n - 1))
    return quantize(adder_tree(x[..., :left], t) + adder_tree(x[..., left:], t), t)


@kernel("softmax")
def _softmax_kernel(op: Op, args: list[np.ndarray], types: list[Fx]) -> np.ndarray:
    x, size = args[0], op.attrs["table_size"]
    t = op.types
    if op.attrs["implementation"] == "stable":
        distance = quantize(x.max(axis=-1, keepdims=True) - x, t["inp_norm"])
        index = _address(distance, t["inp_norm"], size)
    else:
        index = _address(x, types[0], size)
    exp_res = quantize(op.weights["exp_table"][index], t["accum"])
    exp_sum = quantize(adder_tree(exp_res, t["accum"]), t["inv_inp"])
    inverse = op.weights["inv_table"][_address(exp_sum, t["inv_inp"], size)]
    return quantize(exp_res * inverse[..., None], op.output.type)
