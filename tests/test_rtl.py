"""The RTL backend: da4ml tracing bit-exact with the design's interpreter (every rounding and overflow mode,
every op kind), one Verilated pipeline cycle-exact, the latency derivation, yosys counts parsed from real yosys
output and one tiny real synthesis."""

from __future__ import annotations

import itertools
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import small_jet_config, tiny_jet_config

from trigger.config import load_config
from trigger.design import Design, Fx, Op, Tensor, run
from trigger.design.fixed import OVERFLOW, ROUNDING, quantize
from trigger.errors import ConfigError, InputError

pytest.importorskip("da4ml")

from trigger.rtl import build, device, synth, trace, verilate
from trigger.rtl.stage import rtl_stage

PART = "xcvu13p-flga2577-2-e"
FIXTURES = Path(__file__).parent / "fixtures" / "yosys"


class QuietLog:
    def say(self, message: str) -> None:
        pass

    def stage(self, name: str):
        from contextlib import nullcontext

        return nullcontext()


def _codes(t: Fx, n: int, rng: np.random.Generator) -> np.ndarray:
    """n random values of t, its extremes included."""
    codes = rng.integers(t.min_code, t.max_code + 1, size=n)
    codes[:2] = t.min_code, t.max_code
    return codes * t.lsb


def _inputs(design: Design, n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [_codes(t.type, n * t.size, rng).reshape(n, *t.shape) for t in design.inputs]


def _emulated(design: Design, xs: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([o.reshape(len(xs[0]), -1) for o in run(design, xs)], axis=1)


def _traced(design: Design, xs: list[np.ndarray]) -> np.ndarray:
    """The traced logic run by da4ml's own bit-exact C++ interpreter of it (no Verilator needed)."""
    logic = trace.trace(design).logic
    return logic.predict(np.concatenate([x.reshape(len(x), -1) for x in xs], axis=1))


def _dense(name: str, x: str, w: np.ndarray, b: np.ndarray, types: tuple[Fx, Fx], *, items: tuple[int, ...] = ()) -> Op:
    out, acc = types
    return Op("dense", name, [x], Tensor(name, (*items, w.shape[1]), out), types={"accum": acc},
              weights={"kernel": w, "bias": b}, weight_types={"kernel": Fx(6, 1), "bias": Fx(6, 1)})


def _q6(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """ap_fixed<6,1> weights, half of them pruned to zero."""
    w = quantize(rng.normal(scale=0.4, size=shape), Fx(6, 1))
    return np.where(rng.random(shape) < 0.5, 0.0, w)


def cast_design(seed: int = 1) -> Design:
    """One cast of an ap_fixed<10,4> input per rounding mode, overflow mode and signedness, to random
    narrower types: every input code is fed, so every tie and every overflow happens."""
    rng = np.random.default_rng(seed)
    ops = []
    for (r, o), signed in itertools.product(itertools.product(ROUNDING, OVERFLOW), (True, False)):
        name = f"c_{r}_{o}_{int(signed)}".lower()
        t = Fx(int(rng.integers(2, 8)), int(rng.integers(-1, 5)), signed, r, o)
        ops.append(Op("cast", name, ["x"], Tensor(name, (1,), t)))
    return Design("casts", [Tensor("x", (1,), Fx(10, 4))], ops, [op.name for op in ops])


def ops_design(seed: int = 2) -> Design:
    """Every op kind the backend traces, with negative numbers, negated variables (negative batchnorm scales),
    a narrow saturating accumulator (the C++'s per-product casts) and a padded strided conv."""
    rng = np.random.default_rng(seed)
    t = Fx(9, 4)
    sc, bi = np.array([-0.5, -1.0, 0.75, -0.375, 2.0, -4.0]), np.array([0, 0, 0.25, -0.5, 0, 0.125])
    w, b = _q6(rng, 4, 3), quantize(rng.normal(scale=0.4, size=3), Fx(6, 1))
    kern = _q6(rng, 2, 4, 2)
    ops = [
        Op("batchnorm", "bn", ["x"], Tensor("bn", (6,), Fx(14, 6)), weights={"scale": sc, "bias": bi},
           weight_types={"scale": Fx(8, 3), "bias": Fx(8, 3)}),
        Op("cast", "neg", ["bn"], Tensor("neg", (6,), Fx(6, 3, True, "RND_CONV", "SAT"))),
        *[Op("merge", m, ["x", "bn"], Tensor(m, (6,), Fx(9, 4, True, "RND", "SAT")), attrs={"op": m})
          for m in ("add", "subtract", "multiply", "maximum", "minimum")],
        Op("dot", "square", ["subtract", "subtract"], Tensor("square", (1,), Fx(12, 8, False, "RND_CONV", "SAT")),
           types={"accum": Fx(20, 12)}),
        Op("dot", "narrow", ["x", "bn"], Tensor("narrow", (1,), Fx(12, 8)),
           types={"accum": Fx(10, 6, True, "TRN", "SAT")}),
        Op("concatenate", "cat", ["maximum", "minimum"], Tensor("cat", (12,), t), attrs={"axis": 1}),
        Op("reshape", "items", ["cat"], Tensor("items", (3, 4), t)),
        _dense("wide", "items", w, b, (Fx(12, 5, True, "RND_CONV", "SAT"), Fx(24, 10)), items=(3,)),
        _dense("sat_acc", "items", w, b, (Fx(8, 3), Fx(7, 3, True, "RND", "SAT")), items=(3,)),
        Op("conv", "conv", ["items"], Tensor("conv", (2, 2), Fx(10, 4)), types={"accum": Fx(24, 10)},
           weights={"kernel": kern, "bias": b[:2]}, weight_types={"kernel": Fx(6, 1), "bias": Fx(6, 1)},
           attrs={"filter": [2], "strides": [2], "padding": [[0, 1]]}),
        Op("relu", "relu", ["conv"], Tensor("relu", (2, 2), Fx(6, 2, False, "RND_CONV", "SAT"))),
    ]
    outputs = ["neg", "add", "subtract", "multiply", "maximum", "minimum", "square", "narrow", "wide", "sat_acc",
               "relu"]
    return Design("ops", [Tensor("x", (6,), Fx(10, 4))], ops, outputs)


def deep_design(seed: int = 0) -> Design:
    """Six ReLU layers, then products of their outputs: da4ml's scale factors shrink layer by layer until a
    product of two variables needs rebasing (`trace._rebase`)."""
    rng = np.random.default_rng(seed)
    ops, x = [], "x"
    for layer in range(6):
        w = quantize(rng.normal(scale=0.6, size=(8, 8)), Fx(8, 2))
        ops += [Op("dense", f"d{layer}", [x], Tensor(f"d{layer}", (8,), Fx(30, 14)), types={"accum": Fx(30, 14)},
                   weights={"kernel": w, "bias": quantize(rng.normal(scale=0.3, size=8), Fx(10, 4))},
                   weight_types={"kernel": Fx(8, 2), "bias": Fx(10, 4)}),
                Op("relu", f"a{layer}", [f"d{layer}"], Tensor(f"a{layer}", (8,), Fx(14, 5, False, "RND", "SAT")))]
        x = f"a{layer}"
    ops += [Op("merge", "product", ["a5", "a4"], Tensor("product", (8,), Fx(16, 8, True, "RND", "SAT")),
               attrs={"op": "multiply"}),
            Op("dot", "square", ["a5", "a5"], Tensor("square", (1,), Fx(20, 12, False, "RND_CONV", "SAT")),
               types={"accum": Fx(40, 20)})]
    return Design("deep", [Tensor("x", (8,), Fx(16, 6))], ops, ["product", "square", "a5"])


def score_design(seed: int = 3) -> Design:
    """A small tagger head and an anomaly score path as the families lower them: dense, QKeras relu
    (RND_CONV, SAT), logits (TRN, WRAP) and their table softmax (ROMs read from memory files), input minus
    reconstruction, its rounding, sum of squares, score."""
    rng = np.random.default_rng(seed)
    x_t, relu_t = Fx(10, 4), Fx(6, 0, False, "RND_CONV", "SAT")
    enc, dec = _q6(rng, 8, 4), _q6(rng, 4, 8)
    zero4, zero8 = np.zeros(4), quantize(rng.normal(scale=0.3, size=8), Fx(6, 1))
    ops = [
        _dense("enc", "x", enc, zero4, (Fx(20, 9), Fx(20, 9))),
        Op("relu", "enc_relu", ["enc"], Tensor("enc_relu", (4,), relu_t)),
        _dense("logits", "enc_relu", _q6(rng, 4, 3), np.zeros(3), (Fx(8, 2), Fx(16, 5))),  # wraps
        _dense("dec", "enc_relu", dec, zero8, (Fx(16, 6), Fx(16, 6))),
        Op("merge", "diff", ["x", "dec"], Tensor("diff", (8,), Fx(18, 7)), attrs={"op": "subtract"}),
        Op("cast", "diff_q", ["diff"], Tensor("diff_q", (8,), Fx(8, 4, True, "RND_CONV", "SAT"))),
        Op("dot", "sum_squares", ["diff_q", "diff_q"], Tensor("sum_squares", (1,), Fx(24, 12)),
           types={"accum": Fx(24, 12)}),
        Op("relu", "score", ["sum_squares"], Tensor("score", (1,), Fx(10, 6, False, "RND_CONV", "SAT"))),
        _softmax("probabilities", "logits", 3, implementation="latency", size=64, seed=seed),
    ]
    return Design("score", [Tensor("x", (8,), x_t)], ops, ["logits", "score", "probabilities"])


def _softmax(name: str, x: str, n: int, *, implementation: str, size: int, seed: int) -> Op:
    """A table softmax with tables on their types (random near exp(-x) and 1/x: their values do not matter
    for bit-exactness, only that both sides read the same tables)."""
    rng = np.random.default_rng(seed)
    table_t = Fx(18, 8, True, "RND", "SAT")
    types = {"exp_table": table_t, "inv_table": table_t, "accum": Fx(18, 8), "inv_inp": Fx(18, 8)}
    if implementation == "stable":
        types["inp_norm"] = Fx(16, 6, False)
    tables = {"exp_table": quantize(np.exp(-np.linspace(0, 16, size)) * rng.uniform(0.9, 1.1, size), table_t),
              "inv_table": quantize(1 / np.linspace(0.5, 6, size), table_t)}
    return Op("softmax", name, [x], Tensor(name, (n,), Fx(16, 6, True, "TRN", "SAT")), types=types, weights=tables,
              weight_types={"exp_table": table_t, "inv_table": table_t},
              attrs={"implementation": implementation, "table_size": size})


def softmax_design() -> Design:
    ops = [_softmax(f"sm_{impl}", "x", 5, implementation=impl, size=256, seed=i)
           for i, impl in enumerate(("stable", "latency"))]
    return Design("softmax", [Tensor("x", (5,), Fx(16, 6))], ops, [op.name for op in ops])


def spanet_design(seed: int = 6, score_heads: int = 2) -> Design:
    """SPA-Net's three extension ops, small: a shared dense with ReLU, masked self-attention with its two
    softmax tables, the triplet scores (of a head per top, or of one shared head) and their greedy argmax."""
    from trigger.design.spanet import MASK, attention_op, dense_op, softmax_tables, triplet_op

    rng = np.random.default_rng(seed)
    n, d_in, d, h, rank = 4, 3, 4, 2, 2
    act, w_t, b_t = Fx.declared([14, 6]), Fx.declared([8, 2]), Fx.declared([10, 4])
    soft = Fx.declared([10, 1, False])

    def weights(*shape: int, t: Fx = w_t) -> tuple[np.ndarray, Fx]:
        return quantize(rng.normal(scale=0.5, size=shape), t), t

    embed = dense_op("embed", ["jets"], Tensor("embed", (n, d), act),
                     {"in": Fx.declared([16, 6]), "out": act, "weight": w_t, "bias": b_t},
                     {"kernel": weights(d_in, d), "bias": weights(d, t=b_t)}, relu=True)
    exp_table, inv_table = softmax_tables(4, 8, 5, n, exp_t=soft, inv_t=soft)
    attention = attention_op(
        "attention", ["embed", "mask"], Tensor("attention", (n, d), act),
        {"in": act, "qkv": Fx.declared([14, 6]), "score": Fx.declared([14, 7]), "exp": soft, "inv": soft,
         "attn": soft, "ctx": Fx.declared([14, 6]), "out": act, "weight": w_t, "bias": b_t},
        {**{f"kernel_{c}": weights(d, h) for c in "qkv"}, **{f"bias_{c}": weights(h, t=b_t) for c in "qkv"},
         "kernel_o": weights(h, d), "bias_o": weights(d, t=b_t), "exp_table": (exp_table, soft),
         "inv_table": (inv_table, soft)}, exp_frac=4, inv_frac=5)
    triplets = triplet_op(
        "triplets", ["attention", "mask"], Tensor("triplets", (8,), Fx.declared([18, 10])),
        {"in": act, "factor": Fx.declared([12, 5]), "pair": Fx.declared([14, 7]), "score": Fx.declared([18, 10]),
         "weight": w_t, "bias": b_t},
        {"kernel_b": weights(score_heads, d, rank), "bias_b": weights(score_heads, rank, t=b_t),
         "kernel_p": weights(score_heads, d, rank), "bias_p": weights(score_heads, rank, t=b_t)}, n_items=n)
    return Design("spanet", [Tensor("jets", (n, d_in), Fx.declared([16, 6])), Tensor("mask", (n,), MASK)],
                  [embed, attention, triplets], ["attention", "triplets"])


def tiny_design() -> Design:
    """A few adders, a multiplier and a small table softmax (ROMs): quick to synthesise."""
    w = np.array([[0.5, -0.25], [0.75, 0.125], [-0.5, 0.375], [0.25, -0.625]])
    return Design("tiny", [Tensor("x", (4,), Fx(8, 3)), Tensor("a", (2,), Fx(12, 4))], [
        _dense("fc", "x", w, np.array([0.125, -0.25]), (Fx(14, 5), Fx(14, 5))),
        Op("relu", "act", ["fc"], Tensor("act", (2,), Fx(12, 4, False, "RND_CONV", "SAT"))),
        Op("merge", "prod", ["act", "a"], Tensor("prod", (2,), Fx(16, 6, True, "RND", "SAT")),
           attrs={"op": "multiply"}),
        _softmax("sm", "act", 2, implementation="latency", size=16, seed=0),
    ], ["prod", "sm"])


# ------------------------------------------------------------------------------------------- tracing


def test_cast_equals_the_interpreter_in_every_rounding_and_overflow_mode() -> None:
    design = cast_design()
    x = [np.arange(-512, 512, dtype=np.float64)[:, None] / 64]  # every code of ap_fixed<10,4>
    np.testing.assert_array_equal(_traced(design, x), _emulated(design, x))


def test_the_tests_cover_every_tracer() -> None:
    designs = (ops_design(), softmax_design(), spanet_design())
    assert {op.kind for d in designs for op in d.ops} == set(trace.TRACERS)


def test_every_core_op_kind_equals_the_interpreter() -> None:
    design = ops_design()
    xs = _inputs(design, 20000)
    np.testing.assert_array_equal(_traced(design, xs), _emulated(design, xs))


def test_products_after_deep_layers_equal_the_interpreter() -> None:
    design = deep_design()
    xs = _inputs(design, 5000)
    np.testing.assert_array_equal(_traced(design, xs), _emulated(design, xs))


def test_table_softmax_equals_the_interpreter() -> None:
    design = softmax_design()
    xs = _inputs(design, 20000)
    np.testing.assert_array_equal(_traced(design, xs), _emulated(design, xs))


@pytest.mark.parametrize("score_heads", [2, 1])
def test_spanet_ops_equal_the_interpreter(score_heads: int) -> None:
    """Events with every jet, with none, with the first jets missing, and with integer features (score
    ties in the argmax); a head per top, and one head shared by both."""
    design = spanet_design(score_heads=score_heads)
    jets, _ = _inputs(design, 3000, seed=7)
    jets[:300] = np.clip(np.round(jets[:300]), -32, 31)
    mask = (np.random.default_rng(8).random((3000, 4)) < 0.8).astype(np.float64)
    mask[:5], mask[5:10], mask[10:20, :2] = 0.0, 1.0, 0.0
    np.testing.assert_array_equal(_traced(design, [jets, mask]), _emulated(design, [jets, mask]))


def test_untraceable_op_kind_is_refused_by_name() -> None:
    design = cast_design()
    design.ops[0].kind = "mystery"
    with pytest.raises(InputError, match=r"c_trn_wrap_1: op kind 'mystery' has no RTL lowering"):
        trace.trace(design)


def test_stage_count_follows_the_clock() -> None:
    traced = trace.trace(score_design())
    depth = traced.logic.latency[1]
    for clock, levels in ((10.0, 11), (5.0, 5), (2.5, 2)):
        p = build.pipeline(traced, clock, PART)
        assert p.levels_per_stage == levels
        assert p.stages == math.ceil(depth / levels)
        assert p.latency_ns == pytest.approx(p.stages * clock)
        assert f"{p.stages} cycles" in p.derivation()


def test_part_families() -> None:
    assert device.family_of("xcvu13p-flga2577-2-e").yosys == "xcup"
    assert device.family_of("xcku115-flvb2104-2-e").yosys == "xcu"
    assert device.family_of("xc7z020clg400-1").yosys == "xc7"
    assert device.family_of("xczu9eg-ffvb1156-2-e").yosys == "xcup"
    with pytest.raises(InputError, match="knows Xilinx"):
        device.family_of("10AX115S2F45I1SG")


def test_backends_config_key(tmp_path: Path) -> None:
    assert load_config(small_jet_config(tmp_path)).backends == ("hls",)
    assert load_config(small_jet_config(tmp_path, backends=["hls", "rtl"])).backends == ("hls", "rtl")
    for bad in (["hls", "hls"], ["vhdl"], "rtl", []):
        with pytest.raises(ConfigError, match=r"^backends: must be a list of 'hls' and 'rtl'"):
            load_config(small_jet_config(tmp_path, backends=bad))


# ------------------------------------------------------------------------------------------ Verilator


def test_verilated_pipeline_is_bit_exact_and_cycle_exact(tmp_path: Path) -> None:
    """One Verilator build (about a minute): every held-out event streamed one per clock, its outputs read
    exactly `latency_cycles` later, equal to the interpreter; the RTL folder holds sources only."""
    design = score_design()
    xs = _inputs(design, 20000, seed=4)
    head = Design("head", design.inputs, design.ops[:1], ["enc"])  # the relu's input: count its exact ties
    pre = run(head, xs)[0]
    assert np.mean(pre * 2 ** 6 % 1 == 0.5) > 0.01  # RND_CONV ties are exercised
    section, out = rtl_stage(design, tmp_path, clock_period_ns=5.0, part=PART, x_heldout=xs,
                             emulator_out=run(design, xs), log=QuietLog())
    np.testing.assert_array_equal(out, _emulated(design, xs))
    eq = section["equivalence"]
    assert (eq["events"], eq["bit_exact_fraction"], eq["max_abs_diff"], eq["first_mismatches"]) == (20000, 1.0, 0.0, [])
    assert section["latency_cycles"] == section["stages"] >= 2
    assert section["latency_ns"] == pytest.approx(5.0 * section["stages"])
    assert section["ii"] == 1
    assert section["da4ml_estimate"]["lut"] > 0
    rtl = tmp_path / "rtl"
    meta = json.loads((rtl / "metadata.json").read_text())
    assert meta["latency"] == meta["latency_cycles"] == section["stages"]
    assert meta["part"] == PART
    readme = (rtl / "README.md").read_text()
    assert "II = 1" in readme
    assert f"latency {section['stages']} cycles" in readme
    assert "`x[7]`" in readme
    assert PART in (rtl / "build_vivado_prj.tcl").read_text()
    assert (rtl / "src" / "score.v").is_file()
    assert (rtl / "build_quartus_prj.tcl").is_file()
    assert not list(rtl.rglob("*.so"))
    assert not (rtl / "sim" / "obj_dir").exists()
    assert not list(tmp_path.glob(".rtl*"))


def test_compile_with_the_rtl_backend(tmp_path: Path) -> None:
    """`backends: [hls, rtl]` end to end on a tiny trained tagger: the third equivalence leg, report.json's
    rtl section, the budget on the RTL pipeline's latency, the RTL project in hls_projects/<name>/rtl."""
    from trigger.pipeline import CompileOptions, compile_config

    report = compile_config(tiny_jet_config(tmp_path, backends=["hls", "rtl"]), CompileOptions(quiet=True,
                                                                                                 synth=True))
    leg = report["equivalence"]["legs"]["emulator_vs_rtl"]
    assert leg["bit_exact_fraction"] == 1.0
    assert leg["events"] == report["equivalence"]["events"] >= 1000
    rtl = report["rtl"]
    assert rtl["latency_cycles"] >= 1
    assert rtl["ii"] == 1
    assert report["budget"]["basis"].startswith("rtl pipeline")
    project = Path(report["outputs"]["project_dir"])
    assert (project / "rtl" / "README.md").is_file()
    y = report["synthesis"]["yosys"]
    assert min(y["lut"], y["ff"]) > 0
    md = (project / "report.md").read_text()
    est = report["estimate"]["totals"]
    assert f"| HLS estimate (trigger estimator) | {est['latency_cycles']} cycles" in md
    assert f"| RTL pipeline (da4ml's estimate for resources) | {rtl['latency_cycles']} cycles" in md
    assert f"| yosys synth_xilinx (not Vivado) | - | - | {y['lut']} | {y['ff']} | {y['dsp']} |" in md
    assert "- yosys synth_xilinx (-family xcup; yosys is not Vivado)" in md


def test_synth_without_the_rtl_backend_is_refused_first(tmp_path: Path) -> None:
    from trigger.pipeline import CompileOptions, compile_config

    with pytest.raises(InputError, match="--synth: synthesises the RTL backend's Verilog"):
        compile_config(tiny_jet_config(tmp_path), CompileOptions(quiet=True, synth=True))
    assert not (tmp_path / "hls_projects").exists()


def test_off_grid_inputs_are_refused_before_any_work(tmp_path: Path) -> None:
    design = score_design()
    xs = _inputs(design, 10)
    xs[0][0, 0] += 2 ** -12
    with pytest.raises(InputError, match="not values of ap_fixed<10,4>"):
        rtl_stage(design, tmp_path, clock_period_ns=5.0, part=PART, x_heldout=xs, emulator_out=run(design, xs),
                        log=QuietLog())
    assert not (tmp_path / "rtl").exists()


def test_missing_verilator_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "verilator", None)
    with pytest.raises(InputError, match="Verilator is not installed"):
        verilate.toolchain()


# ---------------------------------------------------------------------------------------------- yosys


def test_yosys_stat_parser_on_real_output() -> None:
    """tests/fixtures/yosys/stat.json: yosys 0.70 `stat -json` after the synth.ys beside it, on `tiny_design`."""
    got = synth.read_stat(FIXTURES / "stat.json")
    assert {k: got[k] for k in ("lut", "ff", "carry", "dsp", "bram")} == \
        {"lut": 227, "ff": 119, "carry": 43, "dsp": 2, "bram": 0}
    assert got["cells"]["SRL16E"] == 53  # counted as LUTs, as Vivado's CLB LUTs count shift registers
    assert got["yosys_version"] == "0.70"


def test_yosys_stat_parser_refuses_other_json(tmp_path: Path) -> None:
    path = tmp_path / "stat.json"
    path.write_text('{"modules": {}}')
    with pytest.raises(InputError, match="not yosys `stat -json` output"):
        synth.read_stat(path)


def test_trigger_synth_records_yosys_counts(tmp_path: Path) -> None:
    """A real yosys run (about 25 s, most of it WebAssembly start-up) on a tiny RTL project with a report."""
    design = tiny_design()
    p = build.pipeline(trace.trace(design), 5.0, PART)
    build.write_project(p, design, tmp_path / "rtl", PART)
    (tmp_path / "report.json").write_text(json.dumps({"name": "tiny", "rtl": {"da4ml_estimate": p.estimate()}}))
    (tmp_path / "report.md").write_text("# tiny\n\n## Latency and resources\n\n| source | latency |\n|---|---|\n"
                                        "| RTL pipeline | 3 cycles |\n\n## Firmware\n\nHLS project\n")
    from trigger.cli import main

    assert main(["synth", str(tmp_path)]) == 0
    y = json.loads((tmp_path / "report.json").read_text())["synthesis"]["yosys"]
    assert y["family"] == "xcup"
    assert min(y["lut"], y["ff"], y["carry"], y["dsp"], y["seconds"]) > 0
    md = (tmp_path / "report.md").read_text()
    assert "- yosys synth_xilinx (-family xcup; yosys is not Vivado)" in md
    assert md.index("yosys synth_xilinx") < md.index("## Firmware")
    assert f"| RTL pipeline | 3 cycles |\n| yosys synth_xilinx (not Vivado) | - | - | {y['lut']} | {y['ff']} |" in md
    assert (tmp_path / "rtl" / "synth" / "yosys.log").is_file()


def test_trigger_synth_without_rtl_says_how(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from trigger.cli import main

    assert main(["synth", str(tmp_path)]) == 2
    assert "compile with `backends: [hls, rtl]` first" in capsys.readouterr().err


@pytest.mark.slow
def test_full_size_tagger_rtl_and_synthesis(tmp_path: Path) -> None:
    """The 16-64-32-32-5 q6 tagger's architecture with random half-pruned weights: Verilated bit-exact, and
    yosys's counts (about 4 minutes) within 30 % of da4ml's estimate."""
    rng = np.random.default_rng(5)
    relu = Fx(6, 0, False, "RND_CONV", "SAT")
    sizes, ops, x = [16, 64, 32, 32], [], "x"
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        ops += [_dense(f"fc{i}", x, _q6(rng, a, b), _q6(rng, b), (Fx(24, 10), Fx(24, 10))),
                Op("relu", f"relu{i}", [f"fc{i}"], Tensor(f"relu{i}", (b,), relu))]
        x = f"relu{i}"
    ops.append(_dense("output", x, _q6(rng, 32, 5), _q6(rng, 5), (Fx(16, 6), Fx(16, 6))))
    design = Design("tagger", [Tensor("x", (16,), Fx(16, 6))], ops, ["output"])
    xs = _inputs(design, 20000)
    section, _ = rtl_stage(design, tmp_path, clock_period_ns=5.0, part=PART, x_heldout=xs,
                           emulator_out=run(design, xs), log=QuietLog())
    assert section["equivalence"]["bit_exact_fraction"] == 1.0
    y = synth.synth_project(tmp_path)
    est = section["da4ml_estimate"]
    assert 0.7 < y["lut"] / est["lut"] < 1.3
    assert y["dsp"] == 0
