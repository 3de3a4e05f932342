"""Conversion: types derived from the quantizers give a bit-exact C simulation; the exported test bench
checks golden vectors on its own. Weights here are random: these tests are about arithmetic, not physics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trigger.config import parse_config
from trigger.convert import check_supported, compile_csim, convert, hls_config, run_testbench
from trigger.errors import ConfigError, InputError
from trigger.families.jet_tagger import JetTagger
from trigger.fixed_point import to_grid


def _config(**extra: object) -> object:
    raw = {"name": "unit", "model": {"family": "jet_tagger", "architecture": {"hidden": [12, 8]}},
           "data": {"file": "unused.h5"},
           "quantization": {"default": {"weight": {"bits": 8, "integer": 1}, "bias": {"bits": 8, "integer": 2},
                                        "activation": {"bits": 7, "integer": 2}},
                            "layers": {"fc2": {"weight": {"bits": 4, "integer": 0}}}}}
    raw.update(extra)
    return parse_config(raw)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    import tensorflow as tf

    tf.keras.utils.set_random_seed(3)
    cfg = _config()
    family = JetTagger(cfg)
    firmware = family.firmware_model(family.build(quantized=True))
    x = to_grid(np.random.default_rng(0).normal(scale=4.0, size=(3000, 16)), cfg.quantization.input).values
    reference = firmware.predict(x, verbose=0).astype(np.float64)
    project = tmp_path_factory.mktemp("staged") / "unit"
    hls_model = convert(firmware, cfg, family, project, tb_inputs=x[:50], tb_outputs=reference[:50])
    compile_csim(hls_model)
    return cfg, hls_model, project, x, reference


def test_csim_is_bit_exact_with_the_qkeras_model(compiled: tuple) -> None:
    _, hls_model, _, x, reference = compiled
    np.testing.assert_array_equal(hls_model.predict(x), reference)


def test_types_come_from_the_quantizers(compiled: tuple) -> None:
    _, hls_model, _, _, _ = compiled
    types = {layer.name: {k: str(v.precision) for k, v in layer.types.items()} for layer in hls_model.get_layers()}
    assert types["inputs"]["result_t"].startswith("fixed<16,6")
    assert types["fc1"]["weight_t"].startswith("fixed<8,2")
    assert types["fc2"]["weight_t"].startswith("fixed<4,1")
    assert types["relu1"]["result_t"].startswith("ufixed<7,2")


def test_exported_testbench_checks_golden_vectors(compiled: tuple) -> None:
    cfg, _, project, _, _ = compiled
    assert run_testbench(project, cfg.name)["passed"] is True
    golden = project / "tb_data" / "tb_output_predictions.dat"
    lines = golden.read_text().splitlines()
    values = lines[7].split()
    values[1] = repr(float(values[1]) + 2.0**-12)  # one LSB-sized change in one output of one event
    golden.write_text("\n".join([*lines[:7], " ".join(values), *lines[8:]]) + "\n")
    result = run_testbench(project, cfg.name)
    assert result["passed"] is False
    assert "FAIL: 1 outputs differ" in result["summary"]


def test_precision_overrides_and_unknown_layers() -> None:
    cfg = _config(hls={"precision": {"layers": {"fc1": {"result": "ap_fixed<24,10>"}}}})
    family = JetTagger(cfg)
    conf = hls_config(family.firmware_model(family.build(quantized=True)), cfg, family)
    assert conf["LayerName"]["fc1"]["Precision"]["result"] == "ap_fixed<24,10>"
    assert conf["LayerName"]["inputs"]["Precision"]["result"] == "fixed<16,6>"
    bad = _config(hls={"precision": {"layers": {"fc9": {"result": "ap_fixed<24,10>"}}}})
    with pytest.raises(ConfigError, match=r"hls.precision.layers.fc9: no such layer"):
        hls_config(family.build(quantized=True), bad, JetTagger(bad))


def test_unsupported_layer_is_named() -> None:
    from tensorflow import keras

    inputs = keras.Input((16,))
    x = keras.layers.Dense(8, name="fc")(inputs)
    x = keras.layers.GaussianNoise(0.1, name="noise")(x)
    model = keras.Model(inputs, x)
    cfg = _config()
    with pytest.raises(InputError, match=r"model.h5: layer 'noise' of type GaussianNoise is not supported"):
        check_supported(model, "model.h5", JetTagger(cfg))


def test_relocated_config_has_no_staging_paths(compiled: tuple, tmp_path: Path) -> None:
    from trigger.convert import relocate_config

    _, _, project, _, _ = compiled
    final = tmp_path / "hls_projects" / "unit"
    relocate_config(project, final)
    text = (project / "hls4ml_config.yml").read_text()
    assert str(project.parent) not in text
    assert str(final / "tb_data" / "tb_input_features.dat") in text


def test_linear_quantizer_after_dense_stays_exact(tmp_path: Path) -> None:
    """hls4ml 1.3.0 folds a linear QActivation(quantized_bits) into the Dense before it and drops its
    rounding; the derived types must keep it, or the C simulation silently stops being bit-exact."""
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits

    tf.keras.utils.set_random_seed(11)
    inputs = tf.keras.Input((16,), name="inputs")
    h = QDense(12, kernel_quantizer=quantized_bits(8, 1, alpha=1), bias_quantizer=quantized_bits(8, 1, alpha=1),
               name="dense_a")(inputs)
    h = QActivation(quantized_bits(6, 2, alpha=1), name="round_a")(h)
    h = QDense(5, kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(6, 0, alpha=1),
               name="dense_b")(h)
    model = tf.keras.Model(inputs, h)
    cfg = _config()
    x = to_grid(np.random.default_rng(1).normal(scale=4.0, size=(4000, 16)), cfg.quantization.input).values
    reference = model.predict(x, verbose=0).astype(np.float64)
    hls_model = convert(model, cfg, JetTagger(cfg), tmp_path / "unit", tb_inputs=x[:10], tb_outputs=reference[:10])
    compile_csim(hls_model)
    np.testing.assert_array_equal(hls_model.predict(x), reference)
