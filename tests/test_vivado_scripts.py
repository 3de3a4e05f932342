"""The vendor scripts: relative project path (tree written elsewhere, then moved), tool detection."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from trigger.errors import InputError
from trigger.vivado_scripts import write_vivado_scripts


def _write(root: Path, backend: str = "Vitis") -> list[Path]:
    project = root / "hls_projects" / "tagger"
    project.mkdir(parents=True)
    return write_vivado_scripts(
        project,
        root / "vivado_scripts" / "tagger",
        project_name="myproject",
        backend=backend,
        part="xcvu13p-flga2577-2-e",
        clock_period_ns=4.0,
    )


def test_writes_every_step(tmp_path):
    names = sorted(p.name for p in _write(tmp_path))
    assert names == [
        "cosim.tcl",
        "csim.tcl",
        "csynth.tcl",
        "export.tcl",
        "project.tcl",
        "run.sh",
        "vsynth.tcl",
    ]
    scripts = tmp_path / "vivado_scripts" / "tagger"
    assert os.access(scripts / "run.sh", os.X_OK)
    assert "csynth_design" in (scripts / "csynth.tcl").read_text()
    assert "cosim_design" in (scripts / "cosim.tcl").read_text()
    assert "export_design -format ip_catalog" in (scripts / "export.tcl").read_text()
    assert "report_utilization -file vivado_synth.rpt" in (scripts / "vsynth.tcl").read_text()
    project_tcl = (scripts / "project.tcl").read_text()
    assert "set part xcvu13p-flga2577-2-e" in project_tcl
    assert "set clock_period 4" in project_tcl
    assert "set clock_uncertainty 27%" in project_tcl


def test_no_absolute_paths_and_relative_path_survives_a_move(tmp_path):
    staging, final = tmp_path / "staging", tmp_path / "final"
    _write(staging)
    for path in (staging / "vivado_scripts" / "tagger").iterdir():
        assert str(tmp_path) not in path.read_text(), path.name
    shutil.move(str(staging), str(final))
    project_tcl = (final / "vivado_scripts" / "tagger" / "project.tcl").read_text()
    rel = re.search(r"file join \$script_dir (\S+?)\]", project_tcl).group(1)
    resolved = (final / "vivado_scripts" / "tagger" / rel).resolve()
    assert resolved == (final / "hls_projects" / "tagger").resolve()


def test_run_sh_names_the_missing_tool_in_one_line(tmp_path):
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash not available")
    _write(tmp_path)
    run = tmp_path / "vivado_scripts" / "tagger" / "run.sh"
    assert subprocess.run([bash, "-n", str(run)], check=False).returncode == 0
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "env"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    env = {"PATH": str(bin_dir)}
    result = subprocess.run([bash, str(run), "csynth"], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "vitis_hls" in result.stderr
    assert "vivado_hls" in result.stderr
    assert "nothing was run" in result.stderr
    result = subprocess.run([bash, str(run), "vsynth"], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "vivado is not on PATH" in result.stderr


def test_run_sh_prefers_the_backend_tool(tmp_path):
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash not available")
    _write(tmp_path, backend="Vivado")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    for tool in ("vivado_hls", "vitis_hls"):
        fake = bin_dir / tool
        fake.write_text(f'#!{bash}\necho "{tool} $* $TRIGGER_HLS_TOOL" >> {log}\n')
        fake.chmod(0o755)
    for tool in ("dirname",):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    run = tmp_path / "vivado_scripts" / "tagger" / "run.sh"
    subprocess.run([bash, str(run)], env={"PATH": str(bin_dir)}, check=True, capture_output=True)
    calls = log.read_text().splitlines()
    assert [c.split()[0] for c in calls] == ["vivado_hls", "vivado_hls"]
    assert calls[0].endswith("csim.tcl vivado_hls")
    assert calls[1].endswith("csynth.tcl vivado_hls")


@pytest.mark.parametrize(
    ("backend", "part", "field"),
    [("Vitis", "xcvu9p; exec rm", r"hls\.part"), ("Quartus", "xcvu9p", r"hls\.backend")],
)
def test_rejects_what_cannot_go_into_tcl(tmp_path, backend, part, field):
    (tmp_path / "p").mkdir()
    with pytest.raises(InputError, match=field):
        write_vivado_scripts(tmp_path / "p", tmp_path / "s", project_name="myproject", backend=backend,
                             part=part, clock_period_ns=5)
