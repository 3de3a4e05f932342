"""`trigger compile` on small configs of the autoencoder, VAE and SPA-Net families, as a user runs it (issue 9):
the CLI in a subprocess, stderr to a pipe, so the log a batch job keeps is checked too."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, small_family_config


def _strict(text: str) -> dict:
    def refuse(name: str) -> None:
        raise ValueError(f"{name} in report.json")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("family", ["autoencoder", "vae", "spanet"])
def test_family_compiles_through_the_cli(tmp_path: Path, family: str) -> None:
    overrides = {}
    if family == "autoencoder":  # on the shipped zero-bias crossings, calibrated on a second, generated file
        from trigger.data import generate

        calibration = generate("zerobias", 4000, 9, tmp_path / "calibration.h5", progress=False,
                               options={"library": 200})
        overrides["evaluation"] = {"rates_khz": [1000, 4000], "calibration": {"file": str(calibration)}}
    config = small_family_config(tmp_path, family, **overrides)
    run = subprocess.run([sys.executable, "-m", "trigger", "compile", str(config)], capture_output=True,
                         text=True, cwd=ROOT, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    # A log file or pipe gets one line per stage: no carriage-return progress bars, no library noise.
    assert "\r" not in run.stderr
    stray = [line for line in run.stderr.splitlines() if not line.startswith(("[trigger] ", "warning: "))]
    assert not stray, stray
    name = f"ci_{family}"
    assert run.stdout.startswith(f"{name}: bit-exact 100.0000% of ")
    assert "budget pass (estimate" in run.stdout
    project = tmp_path / "hls_projects" / name
    report = _strict((project / "report.json").read_text())
    eq = report["equivalence"]
    assert eq["bit_exact_fraction"] == 1.0
    assert eq["events"] >= 1000
    assert eq["testbench"]["passed"] is True
    assert report["budget"]["basis"] == "estimate"
    assert report["budget"]["pass_with_margin"] in (True, False)
    assert report["metrics"]["csim"] == report["metrics"]["quantized"]
    assert report["warnings"] == []
    for path in ("report.md", "README.md", "tb_data/tb_output_predictions.dat"):
        assert (project / path).is_file(), path
    assert (tmp_path / "vivado_scripts" / name / "run.sh").is_file()
    assert not list(tmp_path.rglob(".trigger-*"))
    _physics_above_chance(family, report["metrics"]["csim"])
    if family == "autoencoder":
        csim = report["metrics"]["csim"]
        assert csim["background_source"]["file"] == str(tmp_path / "calibration.h5")
        assert csim["n_background"] == 4000
        assert eq["legs"]["emulator_vs_csim_calibration"]["events"] == 4000
        assert eq["legs"]["model_vs_emulator_calibration"]["bit_exact_fraction"] == 1.0
        check = csim["thresholds"]["1000kHz"]["verification"]
        assert check["groups"] == 2  # two chunks, two pileup libraries: too few to measure clustering
        assert "design_effect" not in check
        assert "4000 background crossings" in (project / "report.md").read_text()


def _physics_above_chance(family: str, csim: dict) -> None:
    """Bounds a broken model fails: a constant score has AUC 0.5 for every signal, a random triplet choice
    gets well under 1 % of tops right."""
    if family in ("autoencoder", "vae"):
        assert max(csim["roc_auc"].values()) > 0.7, csim["roc_auc"]
    else:
        assert csim["by_multiplicity"]["all"]["top"] > 0.1, csim["by_multiplicity"]["all"]
