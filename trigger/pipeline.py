"""`trigger compile`: one config -> a trained, pruned, converted, verified, estimated and reported design.

One pipeline for every model family. The order of the stages is the product: data -> QKeras training
(and the float twin) -> tfmot pruning -> hls4ml conversion -> C simulation -> equivalence -> estimate ->
vendor scripts -> report. Everything is staged in a temporary tree and moved into place at the end.
A failed check (not bit-exact, over budget) still delivers the complete project and report, so the
per-layer figures are there to read, and then exits with code 1.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from trigger import equivalence, report
from trigger.config import Config, OutputConfig, load_config
from trigger.errors import CheckFailed, ConfigError, InputError
from trigger.families import ModelFamily, Split, family_class
from trigger.fixed_point import hls_type, on_input_grid
from trigger.staging import Staging

if TYPE_CHECKING:
    from tensorflow import keras

TESTBENCH_EVENTS = 200  # golden vectors in the exported test bench: enough for csim, short enough for cosim


@dataclass
class CompileOptions:
    model_file: Path | None = None
    weights_file: Path | None = None
    out_root: Path | None = None
    seed: int | None = None
    quiet: bool = False
    synth: bool = False  # yosys synth_xilinx on the RTL project (minutes): report.json `synthesis.yosys`


class Log:
    """Stage messages and timings, silent with --quiet; notes (what the user would not expect) always print.
    Progress bars only on a terminal: in a log file or a pipe their carriage returns are noise."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.progress = not quiet and sys.stderr.isatty()
        self.timings: dict[str, float] = {}

    def say(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)

    @staticmethod
    def note(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.say(f"[trigger] {name} ...")
        start = time.perf_counter()
        yield
        self.timings[name] = time.perf_counter() - start
        self.say(f"[trigger] {name}: {self.timings[name]:.1f} s")


def apply_options(cfg: Config, options: CompileOptions) -> Config:
    """Command-line overrides of the config (seed, output root)."""
    if options.seed is not None:
        cfg = dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, seed=options.seed))
    if options.out_root is not None:
        cfg = dataclasses.replace(cfg, output=OutputConfig(options.out_root / "hls_projects",
                                                            options.out_root / "vivado_scripts"))
    return cfg


def _join(u: Any, v: Any) -> Any:
    """Rows of `u` then of `v` (arrays, lists of arrays, or None)."""
    if u is None:
        return None
    if isinstance(u, list):
        return [np.concatenate([p, q]) for p, q in zip(u, v, strict=True)]
    return np.concatenate([u, v])


def _concat(a: Split, b: Split) -> Split:
    return Split(_join(a.x, b.x), _join(a.y, b.y), {k: np.concatenate([a.meta[k], b.meta[k]]) for k in a.meta})


def _predict(model: keras.Model, x: np.ndarray | list[np.ndarray]) -> np.ndarray | list[np.ndarray]:
    out = model.predict(x, batch_size=4096, verbose=0)
    return [np.asarray(o, dtype=np.float64) for o in out] if isinstance(out, list) else np.asarray(out, np.float64)


def _csim_input(x: np.ndarray | list[np.ndarray]) -> np.ndarray | list[np.ndarray]:
    # float64 selects hls4ml's double interface: exact for every input type up to 53 bits.
    return [np.ascontiguousarray(v, dtype=np.float64) for v in x] if isinstance(x, list) \
        else np.ascontiguousarray(x, dtype=np.float64)


def _rows(outputs: np.ndarray | list[np.ndarray], rows: slice) -> np.ndarray | list[np.ndarray]:
    """The events `rows` of one output array or of each of several."""
    return [o[rows] for o in outputs] if isinstance(outputs, list) else outputs[rows]


def _unlist(outputs: np.ndarray | list[np.ndarray]) -> np.ndarray | list[np.ndarray]:
    """A one-output model's outputs as one array, as Keras and hls4ml return them."""
    return outputs[0] if isinstance(outputs, list) and len(outputs) == 1 else outputs


def _design_meta(cfg: Config, family: ModelFamily) -> dict[str, Any]:
    """What the design carries beside its graph: the target and the settings its estimate and backends read."""
    from trigger.vivado_scripts import CLOCK_UNCERTAINTY

    return {"family": family.name, "backend": cfg.hls.backend, "part": cfg.hls.part,
            "clock_period_ns": cfg.hls.clock_period_ns, "clock_uncertainty": CLOCK_UNCERTAINTY[cfg.hls.backend],
            "io_type": cfg.hls.io_type, "strategy": cfg.hls.strategy, "reuse_factor": cfg.hls.reuse_factor}


def _kept_softmax(model: keras.Model) -> str | None:
    """Name of the logits layer when the firmware model ends in a separate softmax Activation."""
    from tensorflow import keras

    last = model.layers[-1]
    if isinstance(last, keras.layers.Activation) and last.get_config().get("activation") == "softmax":
        return last._inbound_nodes[0].inbound_layers.name
    return None


def _shapes(tensors: list[Any]) -> list[tuple[Any, ...]]:
    return [tuple(t.shape[1:]) for t in tensors]


def _check_architecture(family: ModelFamily, user_model: keras.Model | None, source: str) -> None:
    """Everything the conversion needs from the model's architecture, checked before any training.

    The family's own model, built untrained, has the layers and the input and output shapes the config
    describes; a user's model must have the same inputs and outputs (the family's firmware view and metrics
    read them), and the firmware model only layers trigger can compile, named as `hls.precision.layers`
    names them. `hls.softmax: keep` needs a softmax to keep."""
    from trigger.convert import check_supported
    from trigger.model_io import is_quantized

    reference = family.build(quantized=user_model is None or is_quantized(user_model))
    firmware = family.firmware_model(reference)
    if family.cfg.hls.softmax == "keep" and not any(
            layer.get_config().get("activation") == "softmax" for layer in firmware.layers):
        raise ConfigError("hls.softmax", f"the {family.name} firmware has no softmax; 'keep' does not apply "
                                         "(remove the key)")
    if user_model is not None:
        for what, theirs, ours in (("inputs", user_model.inputs, reference.inputs),
                                   ("outputs", user_model.outputs, reference.outputs)):
            if _shapes(theirs) != _shapes(ours):
                raise InputError(f"{source}: model {what} have shapes {_shapes(theirs)}; the {family.name} "
                                 f"family needs {_shapes(ours)}")
        firmware = family.firmware_model(user_model)
    check_supported(firmware, source, family)


def _train_and_prune(family: ModelFamily, cfg: Config, prepared: Any, *, quantized: bool, log: Log,
                     label: str, start_from: keras.Model | None = None,
                     ) -> tuple[keras.Model, dict[str, Any] | None, dict[str, list]]:
    from trigger.prune import prune
    from trigger.train import train

    with log.stage(f"train {label}"):
        model, history = train(family, prepared, cfg.training, quantized=quantized, progress=log.progress,
                               start_from=start_from)
    if not cfg.pruning.enabled:
        return model, None, history
    with log.stage(f"prune {label}"):
        result = prune(model, family, prepared, cfg.pruning, cfg.training, quantized=quantized,
                       progress=log.progress)
    sparsity = {"target": cfg.pruning.target_sparsity, "overall": result.overall, "layers": result.layer_sparsity}
    return result.model, sparsity, {**history, **{f"prune_{k}": v for k, v in result.history.items()}}


def compile_config(config_path: Path, options: CompileOptions) -> dict[str, Any]:
    """Run the whole pipeline; returns report.json's content. Raises CheckFailed after writing the outputs
    when the design is not bit-exact or misses its budget."""
    # Every check on the inputs runs here, before any data is read or model trained; nothing is written
    # until the outputs are committed.
    cfg = apply_options(load_config(config_path), options)
    family = family_class(cfg.model.family)(cfg)
    for path, what in ((options.model_file, "model file"), (cfg.data.file, "data file")):
        if path is not None and not Path(path).is_file():
            raise InputError(f"{path}: {what} not found")
    if options.weights_file is not None and options.model_file is None:
        raise InputError("--weights: goes with --model")
    if options.synth and "rtl" not in cfg.backends:
        raise InputError(f"--synth: synthesises the RTL backend's Verilog; {config_path} has backends "
                         f"{list(cfg.backends)} (add rtl)")
    staging = Staging(cfg.project_dir, cfg.scripts_dir,
                      fields=("--out", "--out") if options.out_root else ("output.projects_dir", "output.scripts_dir"))
    log = Log(options.quiet)
    user_model, weights_file = None, options.weights_file
    if options.model_file is not None:
        from trigger.model_io import load_model, weights_beside

        if options.model_file.suffix == ".json" and weights_file is None:
            weights_file = weights_beside(options.model_file)
        with log.stage("load model"):
            user_model = load_model(options.model_file, weights_file, family.custom_objects())
    _check_architecture(family, user_model, str(options.model_file or cfg.name))

    from trigger.data import load

    with log.stage("load data"):
        data = load(cfg.data.file, fractions=cfg.data.fractions, seed=cfg.data.split_seed,
                    max_events=cfg.data.max_events)
        prepared = family.prepare(data)
        saturated = 0
        for name in ("train", "val", "test"):
            split, n = on_input_grid(getattr(prepared, name), cfg.quantization.input)
            setattr(prepared, name, split)
            saturated += n
    heldout = _concat(prepared.val, prepared.test)
    if len(heldout) < cfg.equivalence.min_events:
        raise ConfigError("equivalence.min_events", f"{cfg.data.file} holds only {len(heldout)} held-out "
                          f"(validation + test) events, fewer than {cfg.equivalence.min_events}")
    log.say(f"[trigger] {data.name}: {len(prepared.train)} train, {len(prepared.val)} validation, "
            f"{len(prepared.test)} test events; {saturated} input values saturated on the input grid")

    histories: dict[str, Any] = {}
    float_model: keras.Model | None = None
    if user_model is not None:
        from trigger.model_io import is_quantized

        model = user_model
        quantized = is_quantized(model)
        if not quantized:
            float_model = model
        from trigger.prune import kernel_sparsity

        layers, overall = kernel_sparsity(model)
        sparsity: dict[str, Any] | None = {"target": None, "overall": overall, "layers": layers}
        source = {"kind": "user model", "model_file": str(options.model_file),
                  "weights_file": str(weights_file) if weights_file else None, "quantized": quantized}
    else:
        quantized = True
        if cfg.training.float_twin:
            float_model, _, histories["float"] = _train_and_prune(family, cfg, prepared, quantized=False, log=log,
                                                                      label="float twin")
        model, sparsity, histories["quantized"] = _train_and_prune(
            family, cfg, prepared, quantized=True, log=log, label="QKeras model",
            start_from=float_model if cfg.training.init_from_float else None)
        source = {"kind": "trained", "model_file": None, "weights_file": None, "quantized": True}

    from trigger.convert import compile_csim, convert, relocate_config, run_testbench, write_dat

    firmware = family.firmware_model(model)
    logits_layer = _kept_softmax(firmware)
    mode = "bit_exact" if quantized else "argmax"

    with staging:
        reference = _predict(firmware, heldout.x)
        tb = heldout.take(slice(0, TESTBENCH_EVENTS))
        with log.stage("hls4ml conversion"):
            hls_model = convert(firmware, cfg, family, staging.project, tb_inputs=tb.x,
                                tb_outputs=_rows(reference, slice(0, TESTBENCH_EVENTS)),
                                trace_layers=[logits_layer] if logits_layer else [], profile_x=prepared.train.x)
        with log.stage("C simulation build"):
            compile_csim(hls_model)
        with log.stage("design and emulator"):
            from trigger.design import lower, run

            design = lower(hls_model, meta=_design_meta(cfg, family))
            design.save(staging.project)
            # `trigger emulate` and `trigger verify` rebuild the family (and its inputs) from this copy.
            (staging.project / "config.yaml").write_text(yaml.safe_dump(cfg.raw, sort_keys=False))
            emulated = _unlist(run(design, heldout.x))
            if logits_layer:
                from tensorflow import keras

                ref_logits = _predict(keras.Model(firmware.inputs, firmware.get_layer(logits_layer).output), heldout.x)
                emu_logits = run(design, heldout.x, tensors=[logits_layer])[0]
        with log.stage("C simulation"):
            csim_out = _unlist(hls_model.predict(_csim_input(heldout.x)))
        # Leg 1 (the lowering): the model against the emulator, on the logits when hls4ml's table softmax is kept
        # (Keras's float softmax is no fixed-point function); leg 2 (the HLS backend): emulator against C simulation.
        model_pair = (ref_logits, emu_logits) if logits_layer else (reference, emulated)
        legs = {"model_vs_emulator": equivalence.compare(*model_pair),
                "emulator_vs_csim": equivalence.compare(emulated, csim_out)}
        exact = {"emulator_vs_csim": equivalence.exact_events(emulated, csim_out)}
        if mode == "bit_exact":
            exact["model_vs_emulator"] = equivalence.exact_events(*model_pair)
        rtl = None
        if "rtl" in cfg.backends:  # leg 3 (the RTL backend): the Verilated da4ml pipeline against the emulator
            from trigger.rtl.stage import rtl_stage

            rtl, rtl_out = rtl_stage(design, staging.project, clock_period_ns=cfg.hls.clock_period_ns,
                                     part=cfg.hls.part, x_heldout=heldout.x, emulator_out=emulated, log=log)
            legs["emulator_vs_rtl"] = rtl["equivalence"]
            exact["emulator_vs_rtl"] = equivalence.exact_events(emulated, rtl_out)
        calibration = family.calibration_events()
        if calibration is not None:
            # Rates are calibrated on these crossings: every model scores them, and the firmware's scores
            # (emulator and C simulation) must agree on them too.
            calibration, _ = on_input_grid(calibration, cfg.quantization.input)
            with log.stage(f"calibration crossings ({len(calibration)} events)"):
                calibrated = {"emulator": _unlist(run(design, calibration.x)),
                              "csim": _unlist(hls_model.predict(_csim_input(calibration.x)))}
                if quantized:
                    calibrated["quantized"] = _predict(firmware, calibration.x)
                if float_model is not None:
                    calibrated["float"] = _predict(family.firmware_model(float_model), calibration.x)
            legs["emulator_vs_csim_calibration"] = equivalence.compare(calibrated["emulator"], calibrated["csim"])
            if mode == "bit_exact":
                legs["model_vs_emulator_calibration"] = equivalence.compare(calibrated["quantized"],
                                                                            calibrated["emulator"])
        synthesis = None
        if options.synth:
            from trigger.rtl.synth import synthesize

            with log.stage("yosys synth_xilinx"):
                synthesis = {"yosys": synthesize(staging.project / "rtl", design.name, rtl["family"])}
        eq = equivalence.combine(legs, exact)
        if logits_layer:
            sm = equivalence.compare(reference, emulated)
            eq["softmax"] = {"argmax_agreement": sm.get("argmax_agreement"), "max_abs_diff": sm["max_abs_diff"]}
        if mode == "argmax" or logits_layer:
            # A float model, or hls4ml's table softmax, cannot match Keras bit for bit: the golden vectors
            # are then the firmware's own outputs (the emulator's, equal to the C simulation's).
            write_dat(staging.project / "tb_data" / "tb_output_predictions.dat",
                      _rows(emulated, slice(0, TESTBENCH_EVENTS)))
        golden = ("the design's emulator (float model, not bit-exact with Keras)" if mode == "argmax"
                  else "the design's emulator (table softmax kept; its logits are bit-exact with Keras)"
                  if logits_layer else "quantized Keras model")
        eq["golden_vectors"] = {"events": len(tb), "source": golden}
        if cfg.hls.io_type == "io_parallel":
            with log.stage("exported test bench"):
                eq["testbench"] = run_testbench(staging.project, cfg.name)
        failure = equivalence.verdict(eq, mode=mode, required_fraction=cfg.equivalence.required_fraction,
                                      required_argmax=cfg.equivalence.required_argmax_agreement)
        eq.update(mode=mode, inputs_saturated=saturated, required_fraction=cfg.equivalence.required_fraction,
                  required_argmax_agreement=cfg.equivalence.required_argmax_agreement, **{"pass": failure is None})

        with log.stage("physics metrics"):
            # The emulator scores the whole test split; the C simulation stays the firmware's witness.
            test = slice(len(prepared.val), None)
            outputs = {"emulator": _rows(emulated, test), "csim": _rows(csim_out, test)}
            if float_model is not None:
                outputs["float"] = _predict(family.firmware_model(float_model), prepared.test.x)
            if quantized:
                outputs["quantized"] = _rows(reference, test)
            metrics_split = prepared.test
            if calibration is not None:
                outputs = {kind: _join(out, calibrated[kind]) for kind, out in outputs.items()}
                metrics_split = _concat(prepared.test, calibration)
            metrics = {kind: family.evaluate(outputs[kind], metrics_split) if kind in outputs else None
                       for kind in ("float", "quantized", "csim", "emulator")}
            plots = family.plots({k: outputs[k] for k in ("float", "quantized", "csim") if k in outputs},
                                 metrics_split, staging.project)

        with log.stage("latency and resource estimate"):
            estimate, budget, table = _estimate(design, cfg, rtl)
        with log.stage("vendor scripts"):
            from trigger.vivado_scripts import write_vivado_scripts

            write_vivado_scripts(staging.project, staging.scripts, project_name=cfg.name, backend=cfg.hls.backend,
                                 part=cfg.hls.part, clock_period_ns=cfg.hls.clock_period_ns)
            from trigger.vendor import missing_tools_message

            missing = missing_tools_message()
            if missing:
                log.say(f"[trigger] {missing}")

        content = _report(cfg, config_path, family, data=data, prepared=prepared, source=source,
                          sparsity=sparsity, eq=eq, metrics=metrics, estimate=estimate, budget=budget, plots=plots,
                          histories=histories, log=log)
        if rtl is not None:
            content["rtl"] = rtl
        if synthesis is not None:
            content["synthesis"] = synthesis
        for warning in content["warnings"]:
            log.note(f"warning: {warning}")
        from trigger.project_readme import write_project_readme

        write_project_readme(staging.project, staging.scripts, cfg, hls_model, content)
        report.write_json(staging.project / "report.json", content)
        (staging.project / "report.md").write_text(report.markdown(content, family.summary_lines(metrics)))
        # hls4ml's keras_model.keras does not reload QKeras layers (Keras 2.14); the HDF5 copy does.
        firmware.save(staging.project / "firmware_model.h5")
        relocate_config(staging.project, cfg.project_dir)
        replaced = staging.commit()

    if replaced:
        log.note(f"[trigger] replaced {' and '.join(map(str, replaced))} from an earlier run")

    log.say(f"[trigger] wrote {cfg.project_dir} and {cfg.scripts_dir}")
    if failure is not None:
        raise CheckFailed(failure)
    if budget.get("pass") is False:
        print(table, file=sys.stderr)
        raise CheckFailed("over budget: " + "; ".join(budget["reasons"]))
    return content


def _estimate(design: Any, cfg: Config, rtl: dict[str, Any] | None = None
              ) -> tuple[dict[str, Any], dict[str, Any], str]:
    """The estimate and the budget check; with the RTL backend on, the latency checked is the RTL pipeline's
    (exact in cycles for the generated Verilog), the resources still the estimate's."""
    from trigger.estimate import budget_table, check_budget, estimate_design, estimate_margin, with_margin

    est = estimate_design(design, clock_period_ns=cfg.hls.clock_period_ns, io_type=cfg.hls.io_type,
                          strategy=cfg.hls.strategy, reuse_factor=cfg.hls.reuse_factor, part=cfg.hls.part,
                          clock_uncertainty=design.meta["clock_uncertainty"])
    totals = dict(est.totals)
    if rtl is not None:
        totals.update(latency_cycles=rtl["latency_cycles"], latency_ns=rtl["latency_ns"])
    result = check_budget(totals, latency_ns=cfg.budget.latency_ns, resources_pct=cfg.budget.resources_pct,
                          part=cfg.hls.part)
    margin = estimate_margin()
    pass_with_margin = with_margin(result, margin["by_metric"])
    budget = {"latency_ns": cfg.budget.latency_ns, "resources_pct": cfg.budget.resources_pct, "part": cfg.hls.part,
              **result.as_dict(), "margin": margin, "pass_with_margin": pass_with_margin,
              "basis": "estimate" if rtl is None else "rtl pipeline (latency), estimate (resources)"}
    return est.as_dict(), budget, budget_table(est)


def _report(cfg: Config, config_path: Path, family: ModelFamily, *, data: Any, prepared: Any,
            source: dict[str, Any], sparsity: dict[str, Any] | None, eq: dict[str, Any], metrics: dict[str, Any],
            estimate: dict[str, Any], budget: dict[str, Any], plots: list[str], histories: dict[str, Any],
            log: Log) -> dict[str, Any]:
    totals = estimate.get("totals") or {}
    return {
        "schema_version": report.SCHEMA_VERSION,
        "name": cfg.name,
        "family": family.name,
        "config": str(config_path),
        "source": source,
        "data": {"file": str(cfg.data.file), "dataset": data.name, "events": {
            "train": len(prepared.train), "val": len(prepared.val), "test": len(prepared.test)},
            "seed": data.manifest.get("seed"), "preprocessing": prepared.preprocessing},
        "equivalence": eq,
        "metrics": metrics,
        "sparsity": sparsity,
        "estimate": {**{k: totals.get(k) for k in report.ESTIMATE_KEYS}, **estimate},
        "budget": budget,
        "hls": {"backend": cfg.hls.backend, "part": cfg.hls.part, "clock_period_ns": cfg.hls.clock_period_ns,
                "io_type": cfg.hls.io_type, "strategy": cfg.hls.strategy, "reuse_factor": cfg.hls.reuse_factor,
                "input_type": hls_type(cfg.quantization.input), "softmax": cfg.hls.softmax},
        "training": {"seed": cfg.training.seed, "history": histories},
        "outputs": {"project_dir": str(cfg.project_dir), "scripts_dir": str(cfg.scripts_dir)},
        "plots": plots,
        # The firmware's figures (the emulator's) say when a rate's threshold rests on too few events.
        "warnings": [w for w in (report.chance_level(metrics, user_model=source["kind"] == "user model"),) if w]
        + [f"rate calibration: {w}" for w in (metrics.get("emulator") or {}).get("warnings", [])],
        "timings_s": dict(log.timings),
        "versions": report.versions(),
    }
