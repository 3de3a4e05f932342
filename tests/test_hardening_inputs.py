"""Every bad input fails before any work, with one line naming the field or file, exit 2, nothing written
(issue 9). Cases that need the model's architecture are checked with training replaced by a failure, so a
check that ran only after training would show up as that failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, small_family_config, small_jet_config

from trigger.cli import main
from trigger.config import load_config, parse_config
from trigger.errors import ConfigError, InputError
from trigger.families import family_class

MINIMAL = {"name": "t", "model": {"family": "jet_tagger"}, "data": {"file": "data/jets.h5"}}


def _with(raw: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """`raw` with the dotted `path` set to `value`."""
    out = json.loads(json.dumps(raw))
    node = out
    *parents, last = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return out


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """A compile that gets as far as training fails the test: input checks must come first."""
    import trigger.train

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("training started before the inputs were checked")

    monkeypatch.setattr(trigger.train, "train", refuse)


def _one_line_exit_2(capsys: pytest.CaptureFixture, argv: list[str], starts: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"error: {starts}"), err[0]
    return err[0]


# ---------------------------------------------------------------------------------------- config values

NUMBER_FIELDS = ["hls.clock_period_ns", "training.learning_rate", "pruning.target_sparsity",
                 "pruning.initial_sparsity", "budget.latency_ns", "budget.resources_pct.dsp",
                 "equivalence.required_fraction", "equivalence.required_argmax_agreement"]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("field", NUMBER_FIELDS)
def test_non_finite_numbers_are_refused(field: str, value: float) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_with(MINIMAL, field, value))
    assert err.value.field == field


def test_non_finite_fractions_are_refused() -> None:
    for fractions in ([float("nan"), 0.5, 0.5], [float("inf"), 0.0, 0.0]):
        with pytest.raises(ConfigError) as err:
            parse_config(_with(MINIMAL, "data.fractions", fractions))
        assert err.value.field == "data.fractions"


@pytest.mark.parametrize(("family", "field"), [
    ("autoencoder", "evaluation.collision_rate_mhz"),
    ("vae", "model.architecture.kl_weight"),
    ("spanet", "evaluation.chi2.m_top"),
    ("autoencoder", "evaluation.rates_khz"),
])
def test_non_finite_family_numbers_are_refused(family: str, field: str) -> None:
    value: Any = [float("nan")] if field == "evaluation.rates_khz" else float("nan")
    cfg = parse_config(_with({**MINIMAL, "model": {"family": family}}, field, value))
    with pytest.raises(ConfigError) as err:
        family_class(family)(cfg)
    assert err.value.field == field


def test_nan_from_yaml_is_refused_by_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(MINIMAL) + "hls: {clock_period_ns: .nan}\n")
    _one_line_exit_2(capsys, ["compile", str(config), "--out", str(tmp_path / "out"), "--quiet"],
                     "hls.clock_period_ns: must be a finite number, got nan")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("field", "value", "message"), [
    ("hls.part", "xc7k999t-ffg900-2", "unknown FPGA part 'xc7k999t-ffg900-2'"),
    ("hls.part", "xcvu9p; exec rm -rf ~", "cannot go into the vendor TCL scripts"),
    ("hls.part", "xcvu9p[exit]", "cannot go into the vendor TCL scripts"),
    ("hls.part", "", "must not be empty"),
    ("output.projects_dir", "my projects", "cannot go into the vendor TCL scripts"),
    ("output.scripts_dir", "scripts$x", "cannot go into the vendor TCL scripts"),
])
def test_values_the_scripts_cannot_take_are_refused(field: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        parse_config(_with(MINIMAL, field, value))
    assert err.value.field == field


def test_one_spelling_of_standardise() -> None:
    for family in ("jet_tagger", "spanet"):
        cfg = parse_config({**MINIMAL, "model": {"family": family, "preprocessing": {"standardize": True}}})
        with pytest.raises(ConfigError, match="unknown key; trigger spells it 'standardise'") as err:
            family_class(family)(cfg)
        assert err.value.field == "model.preprocessing.standardize"
        family_class(family)(parse_config({**MINIMAL, "model": {"family": family,
                                                                  "preprocessing": {"standardise": False}}}))


@pytest.mark.parametrize("family", ["jet_tagger", "spanet"])
def test_quantization_layers_must_name_a_layer(family: str) -> None:
    cfg = parse_config({**MINIMAL, "model": {"family": family},
                        "quantization": {"layers": {"fc_typo": {"weight": {"bits": 4, "integer": 0}}}}})
    with pytest.raises(ConfigError) as err:
        family_class(family)(cfg)
    assert err.value.field == "quantization.layers.fc_typo"


# ----------------------------------------------------------------------------------------- config files


def test_unreadable_config_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"name: t\x00\x01\x02")
    with pytest.raises(InputError, match=r"binary.yaml: a binary file, not a YAML config$"):
        load_config(binary)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"latin.yaml: not UTF-8 text \(byte 9\)"):
        load_config(latin)
    with pytest.raises(InputError, match="a folder, not a config file"):
        load_config(tmp_path)
    locked = tmp_path / "locked.yaml"
    locked.write_text(yaml.safe_dump(MINIMAL))

    def denied(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)  # mode 000 does not stop root, who runs CI here
    with pytest.raises(InputError, match=r"locked.yaml: cannot read the config \(Permission denied\)$"):
        load_config(locked)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads mode-000 files")
def test_mode_000_config(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    locked = tmp_path / "locked.yaml"
    locked.write_text(yaml.safe_dump(MINIMAL))
    locked.chmod(0)
    _one_line_exit_2(capsys, ["compile", str(locked), "--quiet"], f"{locked}: cannot read the config")


def test_binary_config_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "random.yaml"
    config.write_bytes(bytes(range(256)))
    _one_line_exit_2(capsys, ["compile", str(config), "--quiet"], f"{config}: a binary file")


# ------------------------------------------------------------------------------------------------ --out


def test_out_naming_a_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a_file = tmp_path / "afile"
    a_file.write_text("keep me")
    _one_line_exit_2(capsys, ["compile", str(small_jet_config(tmp_path)), "--out", str(a_file), "--quiet"],
                     f"--out: {a_file} is a file, not a folder")
    assert a_file.read_text() == "keep me"


def test_read_only_out(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    read_only = tmp_path / "ro"
    read_only.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != read_only and real_access(p, mode))
    _one_line_exit_2(capsys, ["compile", str(small_jet_config(tmp_path)), "--out", str(read_only / "sub"),
                              "--quiet"], f"--out: {read_only} is not writable")
    assert list(read_only.iterdir()) == []


# ------------------------------------------------------------------------- checks needing the architecture


@pytest.mark.usefixtures("no_training")
def test_precision_layer_typo_is_refused_before_training(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = small_jet_config(tmp_path, hls={"precision": {"layers": {"fc9": {"result": "ap_fixed<8,3>"}}}})
    _one_line_exit_2(capsys, ["compile", str(config), "--out", str(tmp_path / "out"), "--quiet"],
                     "hls.precision.layers.fc9: no such layer in the model")
    assert not (tmp_path / "out").exists()


@pytest.mark.usefixtures("no_training")
@pytest.mark.parametrize("family", ["autoencoder", "spanet"])
def test_softmax_keep_is_refused_where_there_is_no_softmax(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                           family: str) -> None:
    config = small_family_config(tmp_path, family, hls={"softmax": "keep"})
    _one_line_exit_2(capsys, ["compile", str(config), "--quiet"],
                     f"hls.softmax: the {family} firmware has no softmax; 'keep' does not apply")
    assert not (tmp_path / "hls_projects").exists()


def _save(model: Any, path: Path) -> Path:
    if path.suffix == ".json":
        path.write_text(model.to_json())
        model.save_weights(str(path.with_name(path.stem + "_weights.h5")))
    else:
        model.save(str(path))
    return path


def _user_models(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Models of shapes trigger refuses, each with the start of its one-line refusal."""
    from tensorflow import keras

    def tagger_input() -> Any:
        return keras.Input((16,), name="features")

    inputs = tagger_input()
    lstm = keras.layers.LSTM(4, name="lstm")(keras.layers.Reshape((16, 1))(inputs))
    lstm_model = keras.Model(inputs, keras.layers.Dense(5, activation="softmax")(lstm))
    inputs = tagger_input()
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    three = keras.Model(inputs, [keras.layers.Dense(5, name=f"head{i}")(hidden) for i in range(3)])

    class TernaryDense(keras.layers.Dense):  # as in the old hls4ml examples: a class of the user's own
        pass

    inputs = tagger_input()
    ternary = keras.Model(inputs, keras.layers.Dense(5)(TernaryDense(8, name="ternary_1")(inputs)))
    recurrent = "layer 'lstm' of type LSTM is recurrent"
    custom = "layer 'ternary_1' of type TernaryDense is not a Keras/QKeras layer trigger can load"
    return {
        "lstm": (_save(lstm_model, tmp_path / "lstm.h5"), recurrent),
        "three_outputs": (_save(three, tmp_path / "three.h5"),
                          "model outputs have shapes [(5,), (5,), (5,)]; the jet_tagger family needs [(5,)]"),
        "ternary_h5": (_save(ternary, tmp_path / "ternary.h5"), custom),
        "ternary_json": (_save(ternary, tmp_path / "ternary.json"), custom),
    }


@pytest.mark.usefixtures("no_training")
def test_user_models_trigger_cannot_compile_are_refused_by_name(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    config = small_jet_config(tmp_path)
    for path, message in _user_models(tmp_path).values():
        line = _one_line_exit_2(capsys, ["compile", str(config), "--model", str(path), "--quiet"], str(path))
        assert message in line, line
        if "TernaryDense" in message:
            assert "custom_object_scope" not in line
    assert not (tmp_path / "hls_projects").exists()


# ------------------------------------------------------------------------------------------- the CLI


def test_error_after_tensorflow_import_is_one_line(tmp_path: Path) -> None:
    """TensorFlow's C++ core prints three "Unable to register ... factory" lines while it is imported; the
    CLI silences them, so the error (here found after TensorFlow and hls4ml are loaded) is the one line."""
    config = small_jet_config(tmp_path, hls={"precision": {"layers": {"fc9": {"result": "ap_fixed<8,3>"}}}})
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user's shell has it
    run = subprocess.run([sys.executable, "-m", "trigger", "compile", str(config), "--quiet"],
                         capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1, run.stderr
    assert run.stderr.startswith("error: hls.precision.layers.fc9: no such layer in the model"), run.stderr


def test_progress_bars_only_on_a_terminal() -> None:
    from trigger.pipeline import Log

    assert not sys.stderr.isatty()  # pytest captures it
    assert Log(quiet=False).progress is False
    assert Log(quiet=True).progress is False
