"""The anomaly score path through hls4ml: the C simulation equals the QKeras firmware model bit for bit,
including events whose difference and score saturate. Weights are random: arithmetic, not physics."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from trigger.config import parse_config
from trigger.convert import compile_csim, convert
from trigger.families.anomaly import N_INPUTS, Autoencoder, VariationalAutoencoder
from trigger.fixed_point import to_grid


def _family(name: str) -> Autoencoder | VariationalAutoencoder:
    chip = "latent" if name == "autoencoder" else "mu"
    # A narrow score type (top 255.94) so that both families' random-weight scores also saturate.
    architecture = {"encoder": [16], "latent": 4, "score_type": {"bits": 12, "integer": 8}}
    cfg = parse_config({
        "name": f"unit_{name}", "model": {"family": name, "architecture": architecture},
        "data": {"file": "unused.h5"},
        "quantization": {"input": {"bits": 12, "integer": 6},
                         "default": {"weight": {"bits": 8, "integer": 1}, "bias": {"bits": 8, "integer": 3},
                                     "activation": {"bits": 10, "integer": 5}},
                         "layers": {chip: {"activation": {"bits": 10, "integer": 4}}}},
    })
    return Autoencoder(cfg) if name == "autoencoder" else VariationalAutoencoder(cfg)


@pytest.fixture(scope="module", params=["autoencoder", "vae"])
def compiled(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import tensorflow as tf

    tf.keras.utils.set_random_seed(5)
    family = _family(request.param)
    model = family.build(quantized=True)
    rng = np.random.default_rng(6)
    for layer in model.layers:
        if layer.get_weights():
            layer.set_weights([rng.normal(0, 0.3, w.shape).astype(np.float32) for w in layer.get_weights()])
    firmware = family.firmware_model(model)
    # Three regimes: small inputs (fine scores), typical ones, and large ones that saturate the score.
    scale = rng.choice([0.05, 1.0, 20.0], size=(3000, 1))
    x = to_grid(rng.normal(0, 1, (3000, N_INPUTS)) * scale, family.cfg.quantization.input).values
    reference = firmware.predict(x.astype(np.float32), verbose=0).astype(np.float64)
    hls_model = convert(firmware, family.cfg, family, tmp_path_factory.mktemp(request.param) / "prj",
                        tb_inputs=x[:20], tb_outputs=reference[:20])
    compile_csim(hls_model)
    return {"family": family, "hls": hls_model, "x": x, "reference": reference}


def test_csim_score_is_bit_exact_with_the_qkeras_firmware_model(compiled: dict[str, Any]) -> None:
    csim = compiled["hls"].predict(np.ascontiguousarray(compiled["x"], dtype=np.float64))
    reference = compiled["reference"]
    np.testing.assert_array_equal(np.asarray(csim).reshape(reference.shape), reference)
    st = compiled["family"].score_type
    scores = reference[:, 0]
    assert st.on_grid(scores)
    assert 0 < st.saturated(scores) < scores.size  # the saturating regime is covered, not all of it


def test_hls_types_of_the_score_path(compiled: dict[str, Any]) -> None:
    family = compiled["family"]
    types = {layer.name: {k: str(v.precision) for k, v in layer.types.items()}
             for layer in compiled["hls"].get_layers()}
    st = family.score_type
    assert types["score"]["result_t"].startswith(f"ufixed<{st.bits},{st.integer},RND_CONV,SAT")
    assert types["sum_squares"]["accum_t"].startswith("ufixed<")
    assert types["sum_squares"]["result_t"] == types["sum_squares"]["accum_t"]
    # the linear QDense carries its QActivation's rounding (hls4ml would otherwise drop it)
    rounded, expected = ("recon", "fixed<12,6,RND_CONV,SAT") if isinstance(family, Autoencoder) \
        else ("mu", "fixed<10,5,RND_CONV,SAT")
    assert types[rounded]["result_t"].startswith(expected)
    if isinstance(family, Autoencoder):
        assert types["diff"]["result_t"].startswith("fixed<14,8")  # input ap_fixed<12,7> minus ap_fixed<12,6>
        assert types["diff_q"]["result_t"].startswith("fixed<10,5,RND_CONV,SAT")


def test_only_the_encoder_is_on_chip_for_the_vae(compiled: dict[str, Any]) -> None:
    names = {layer.name for layer in compiled["hls"].get_layers()}
    if isinstance(compiled["family"], VariationalAutoencoder):
        assert not names & {"log_var", "sampling", "dec1", "recon"}
    else:
        assert {"dec1", "recon", "diff"} <= names
