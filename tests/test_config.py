"""The config schema: defaults, and one-line errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from trigger.config import load_config, parse_config
from trigger.errors import ConfigError, InputError
from trigger.families import family_class

MINIMAL = {"name": "t", "model": {"family": "jet_tagger"}, "data": {"file": "data/jets.h5"}}


def with_(**sections: object) -> dict:
    raw = {k: dict(v) if isinstance(v, dict) else v for k, v in MINIMAL.items()}
    raw.update(sections)
    return raw


def test_defaults_give_a_complete_design() -> None:
    cfg = parse_config(MINIMAL)
    assert cfg.hls.backend == "Vitis"
    assert cfg.hls.clock_period_ns == 5.0
    assert cfg.quantization.default.weight.bits == 6
    assert cfg.quantization.input.bits == 16
    assert cfg.equivalence.required_fraction == 1.0
    assert cfg.pruning.target_sparsity == 0.5
    assert cfg.project_dir == Path("hls_projects/t")
    assert cfg.scripts_dir == Path("vivado_scripts/t")


def test_shipped_configs_are_valid(root: Path) -> None:
    from trigger.scan.config import load_scan

    configs = sorted((root / "configs").glob("*.yaml"))
    assert configs, "no shipped configs"
    for path in configs:
        if path.name.startswith("scan_"):  # a design-space scan over a compile config (docs/scan.md)
            load_scan(path)
            continue
        cfg = load_config(path)
        family_class(cfg.model.family)(cfg)  # the family validates its own sections


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (with_(trainin={}), "trainin"),
        (with_(training={"epochs": 0}), "training.epochs"),
        (with_(training={"epochs": "ten"}), "training.epochs"),
        (with_(training={"learning_rate": 0}), "training.learning_rate"),
        (with_(hls={"backend": "Quartus"}), "hls.backend"),
        (with_(hls={"io_type": "io_serial"}), "hls.io_type"),
        (with_(hls={"precision": {"default": "ap_fixed<16>"}}), "hls.precision.default"),
        (with_(hls={"precision": {"layers": {"fc1": {"resultt": "ap_fixed<8,3>"}}}}),
         "hls.precision.layers.fc1.resultt"),
        (with_(hls={"clock_period_ns": -1}), "hls.clock_period_ns"),
        (with_(quantization={"default": {"weight": {"bits": 0}}}), "quantization.default.weight.bits"),
        (with_(quantization={"layers": {"fc1": {"weights": {"bits": 4}}}}), "quantization.layers.fc1.weights"),
        (with_(pruning={"target_sparsity": 1.5}), "pruning.target_sparsity"),
        (with_(pruning={"initial_sparsity": 0.6, "target_sparsity": 0.5}), "pruning.initial_sparsity"),
        (with_(budget={"resources_pct": {"uram": 10}}), "budget.resources_pct.uram"),
        (with_(budget={"latency_ns": 0}), "budget.latency_ns"),
        (with_(data={"file": "x.h5", "fractions": [0.5, 0.5]}), "data.fractions"),
        (with_(data={}), "data.file"),
        (with_(name="1bad-name"), "name"),
        ({"model": {"family": "jet_tagger"}, "data": {"file": "x"}}, "name"),
        (with_(model={}), "model.family"),
        (with_(equivalence={"required_fraction": 2}), "equivalence.required_fraction"),
        (with_(training={"float_twin": False, "init_from_float": True}), "training.init_from_float"),
    ],
)
def test_errors_name_the_field(raw: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    assert err.value.field == field
    assert "\n" not in str(err.value)


def test_unknown_family_is_named() -> None:
    with pytest.raises(ConfigError, match=r"model\.family: unknown family 'resnet'"):
        family_class("resnet")


def test_family_validates_its_sections() -> None:
    cfg = parse_config(with_(model={"family": "jet_tagger", "architecture": {"hidden": [64, -1]}}))
    with pytest.raises(ConfigError, match=r"model\.architecture\.hidden"):
        family_class("jet_tagger")(cfg)
    cfg = parse_config(with_(model={"family": "jet_tagger", "architecture": {"depth": 3}}))
    with pytest.raises(ConfigError, match=r"model\.architecture\.depth: unknown key"):
        family_class("jet_tagger")(cfg)


def test_load_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(InputError, match=r"bad.yaml: not valid YAML \(line"):
        load_config(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("name: t\nmodel: {family: jet_tagger}\ndata: {file: x.h5}\nhls: {reuse_factor: 0}\n")
    with pytest.raises(ConfigError, match=r"^hls.reuse_factor: must be >= 1, got 0 \(in .*wrong.yaml\)$"):
        load_config(wrong)
