"""Resource sharing in the SPA-Net extension layers (issue 12): the global (`hls.reuse_factor`) and per-layer
(`model.architecture.reuse_factor`) reuse factors reach the C++ config structs and the design; the C simulation
stays bit-exact with the design's interpreter at every reuse; the estimate trades DSPs and LUTs for latency and
interval; bad values are refused naming the field.

One small random SPA-Net (6 jets, width 8, head 4, rank 3, a third of its weights zero as after pruning) is
compiled at reuse 1, 2 and 4 (about 15 s each on 2 cores); no training is needed, the arithmetic is the test.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from trigger.config import Config, load_config, parse_config
from trigger.errors import ConfigError, InputError
from trigger.families.spanet import SpaNet

ROOT = Path(__file__).resolve().parents[1]
# The layers these tests were written for, with the shipped (shared) triplet head.
SMALL = {"max_jets": 6, "embed": [8, 8], "head_dim": 4, "rank": 3, "heads": 1, "attention_blocks": 1,
         "mass_prior": False, "candidates": 0, "shared_head": True}
REUSE = (1, 2, 4)
EVENTS = 2000
EXTENSION_KINDS = ("fx_dense", "fx_attention", "fx_triplet_argmax")


def _config(reuse: int = 1, per_layer: Any = None) -> Config:
    raw = load_config(ROOT / "configs" / "spanet_ttbar.yaml").raw
    arch = {**raw["model"]["architecture"], **SMALL}
    if per_layer is not None:
        arch["reuse_factor"] = per_layer
    preprocessing = {**raw["model"]["preprocessing"], "four_momentum": False}
    return parse_config({**raw, "model": {**raw["model"], "architecture": arch, "preprocessing": preprocessing},
                         "hls": {**raw["hls"], "reuse_factor": reuse}})


def _meta(cfg: Config) -> dict[str, Any]:
    from trigger.vivado_scripts import CLOCK_UNCERTAINTY

    return {"family": "spanet", "backend": cfg.hls.backend, "clock_uncertainty": CLOCK_UNCERTAINTY[cfg.hls.backend]}


@pytest.fixture(scope="module")
def firmware() -> Any:
    """The fixed-point firmware model of a random quantized SPA-Net."""
    family = SpaNet(_config())
    model = family.build(quantized=True)
    rng = np.random.default_rng(12)
    model.set_weights([rng.normal(0, 0.6, w.shape) * (rng.random(w.shape) > 0.3) for w in model.get_weights()])
    return family.firmware_model(model)


def _converted(firmware: Any, cfg: Config, out: Path) -> Any:
    """The hls4ml model of `firmware` under `cfg`, configured as `trigger compile` configures it."""
    import hls4ml

    from trigger.convert import hls_config

    return hls4ml.converters.convert_from_keras_model(
        firmware, hls_config=hls_config(firmware, cfg, SpaNet(cfg)), output_dir=str(out), backend=cfg.hls.backend,
        part=cfg.hls.part, clock_period=cfg.hls.clock_period_ns, io_type=cfg.hls.io_type)


@pytest.fixture(scope="module")
def projects(firmware: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[int, Any]:
    """Per reuse factor: the compiled hls4ml model, its design, and random events with their C simulation."""
    from trigger.design import lower

    rng = np.random.default_rng(3)
    n_real = rng.integers(0, SMALL["max_jets"] + 1, EVENTS)
    mask = (np.arange(SMALL["max_jets"])[None] < n_real[:, None]).astype(np.float64)
    jets = rng.normal(0, 2, (EVENTS, SMALL["max_jets"], firmware.inputs[0].shape[-1]))
    jets[: EVENTS // 10] *= 20  # saturate some intermediates
    x = [np.ascontiguousarray(np.floor(jets * 2 ** 10) / 2 ** 10 * mask[..., None]), mask]  # the input grid
    out = {}
    for reuse in REUSE:
        cfg = _config(reuse)
        hls_model = _converted(firmware, cfg, tmp_path_factory.mktemp(f"reuse{reuse}"))
        hls_model.compile()
        sim = np.asarray(hls_model.predict(x)).reshape(EVENTS, 8)
        out[reuse] = {"cfg": cfg, "hls": hls_model, "design": lower(hls_model, meta=_meta(cfg)), "x": x, "sim": sim}
    return out


def _estimate(design: Any, cfg: Config) -> Any:
    from trigger.estimate import estimate_design

    return estimate_design(design, clock_period_ns=cfg.hls.clock_period_ns, io_type=cfg.hls.io_type,
                           strategy=cfg.hls.strategy, reuse_factor=cfg.hls.reuse_factor, part=cfg.hls.part,
                           clock_uncertainty=design.meta["clock_uncertainty"])


@pytest.mark.parametrize("reuse", REUSE)
def test_csim_is_bit_exact_with_the_design_at_every_reuse(projects: dict[int, Any], reuse: int) -> None:
    project = projects[reuse]
    design = project["design"]
    assert [op.attrs["reuse_factor"] for op in design.ops] == [reuse] * len(design.ops)
    params = (Path(project["hls"].config.get_output_dir()) / "firmware" / "parameters.h").read_text()
    assert re.findall(r"reuse_factor = (\d+);", params) == [str(reuse)] * len(design.ops)
    from trigger.design import run

    emulated = run(design, project["x"])[0]
    sim = project["sim"]
    differ = np.flatnonzero(np.any(emulated != sim, axis=1))
    assert differ.size == 0, f"reuse {reuse}: {differ.size} of {EVENTS} events differ, first {differ[:5]}"
    assert np.unique(sim[:, 3::4]).size > 50  # the scores are not trivially constant
    assert np.any(sim[:, :3] >= 0)  # and triplets are found


def test_estimate_trades_dsp_and_lut_for_latency_and_interval(projects: dict[int, Any]) -> None:
    estimates = {r: _estimate(projects[r]["design"], projects[r]["cfg"]) for r in REUSE}
    totals = [estimates[r].totals for r in REUSE]
    assert [t["ii"] for t in totals] == list(REUSE)
    for low, high in itertools.pairwise(totals):
        assert high["dsp"] < low["dsp"]
        assert high["lut"] < low["lut"]
        assert high["latency_cycles"] > low["latency_cycles"]
    for kind in EXTENSION_KINDS:
        layers = [next(layer for layer in estimates[r].layers if layer.class_name == kind) for r in REUSE]
        assert [layer.ii for layer in layers] == list(REUSE)
        assert all(b.dsp <= a.dsp and b.latency_cycles > a.latency_cycles
                   for a, b in itertools.pairwise(layers)), kind
        assert "multipliers of each stage shared over 4 cycles" in layers[-1].notes
    # the multipliers are shared, not removed: halving the interval at most halves them (plus rounding)
    assert totals[1]["dsp"] >= totals[0]["dsp"] // 2


def test_per_layer_reuse_overrides_the_global_one(firmware: Any, tmp_path: Path) -> None:
    """`model.architecture.reuse_factor` becomes hls4ml's `LayerName.<name>.ReuseFactor`: the layer's config
    struct and its design op carry it, the other layers keep `hls.reuse_factor`."""
    from trigger.design import lower

    cfg = _config(2, {"triplets": 4, "embed0": 1})
    hls_model = _converted(firmware, cfg, tmp_path / "prj")
    hls_model.write()
    design = lower(hls_model, meta=_meta(cfg))
    want = {"embed0": 1, "embed1": 2, "attention0": 2, "ffn0": 2, "triplets": 4}
    assert {op.name: op.attrs["reuse_factor"] for op in design.ops} == want
    params = (tmp_path / "prj" / "firmware" / "parameters.h").read_text()
    assert [int(r) for r in re.findall(r"reuse_factor = (\d+);", params)] == list(want.values())
    layers = {layer.name: layer for layer in _estimate(design, cfg).layers}
    assert {name: layers[name].ii for name in want} == want
    assert _estimate(design, cfg).totals["ii"] == 4


@pytest.mark.parametrize(("per_layer", "field"), [
    ({"triplets": 0}, r"model\.architecture\.reuse_factor\.triplets: must be >= 1"),
    ({"triplets": 2.5}, r"model\.architecture\.reuse_factor\.triplets: must be an integer"),
    ({"attention0": True}, r"model\.architecture\.reuse_factor\.attention0: must be an integer"),
    ({"attention0": 5000}, r"model\.architecture\.reuse_factor\.attention0: must be <= 4096"),
    ({"attention1": 2}, r"model\.architecture\.reuse_factor\.attention1: not a layer of this SPA-Net"),
    (4, r"model\.architecture\.reuse_factor: must be a mapping"),
])
def test_bad_per_layer_reuse_is_refused_naming_the_field(per_layer: Any, field: str) -> None:
    with pytest.raises(ConfigError, match=field) as info:
        SpaNet(_config(1, per_layer))
    assert "\n" not in str(info.value)


def test_bad_global_reuse_is_refused_naming_the_field() -> None:
    with pytest.raises(ConfigError, match=r"^hls\.reuse_factor: must be >= 1"):
        _config(0)


def test_a_design_with_a_bad_reuse_factor_is_refused(projects: dict[int, Any]) -> None:
    from trigger.design.spanet import triplet_op

    design, cfg = projects[1]["design"], projects[1]["cfg"]
    op = design.ops[-1]
    broken = replace(design, ops=[*design.ops[:-1], replace(op, attrs={**op.attrs, "reuse_factor": 0})])
    with pytest.raises(InputError, match=r"triplets'?: reuse_factor must be an integer >= 1, got 0"):
        _estimate(broken, cfg)
    with pytest.raises(InputError, match="reuse_factor must be an integer >= 1"):
        triplet_op("t", ["x", "mask"], op.output, op.types, {k: (w, op.weight_types[k]) for k, w in op.weights.items()},
                   n_items=6, reuse=-1)


def test_bench_script_sweeps_the_reuse_factors(projects: dict[int, Any], tmp_path: Path) -> None:
    """bench/spanet_reuse.py on a project folder as `trigger compile` writes it (design, config.yaml)."""
    design, cfg = projects[1]["design"], projects[1]["cfg"]
    project = tmp_path / "spanet_small"
    design.save(project)
    (project / "config.yaml").write_text(yaml.safe_dump(cfg.raw, sort_keys=False))
    spec = importlib.util.spec_from_file_location("spanet_reuse", ROOT / "bench" / "spanet_reuse.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "spanet_reuse.json"
    bench.main([str(project), "--out", str(out)])
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert [row["reuse_factor"] for row in rows] == [1, 2, 4, 8]
    assert result["as_compiled"] is None  # no report.json in this folder
    for r in REUSE:  # the compiled designs' own estimates
        want = _estimate(projects[r]["design"], projects[r]["cfg"]).totals
        assert {k: rows[REUSE.index(r)][k] for k in want} == want
    assert rows[-1]["dsp"] < rows[0]["dsp"]
    assert 0 < rows[-1]["dsp_fraction"] < rows[0]["dsp_fraction"] < 1
