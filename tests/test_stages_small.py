"""Small pure stages: the input grid, the equivalence comparison, and staged outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trigger.config import FixedType
from trigger.equivalence import combine, compare, exact_events, verdict
from trigger.fixed_point import hls_type, to_grid, type_range
from trigger.staging import Staging


def test_grid_truncates_and_saturates() -> None:
    t = FixedType(8, 3)  # ap_fixed<8,4>: step 1/16, range [-8, 8 - 1/16]
    assert type_range(t) == (-8.0, 8.0 - 1 / 16, 1 / 16)
    assert hls_type(t) == "fixed<8,4>"
    grid = to_grid(np.array([0.03, -0.03, 7.99, 100.0, -100.0, 1.0625]), t)
    assert grid.values.tolist() == [0.0, -0.0625, 7.9375, 7.9375, -8.0, 1.0625]
    assert grid.saturated == 2


def test_compare_counts_events_not_values() -> None:
    ref = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [0.5, 0.25]])
    sim = ref.copy()
    sim[1, 1] += 2**-10
    result = compare(ref, sim)
    assert result["bit_exact_fraction"] == 0.75
    assert result["max_abs_diff"] == 2**-10
    assert result["first_mismatches"] == [1]
    assert result["argmax_agreement"] == 1.0
    exact = {"model_vs_emulator": exact_events(ref, sim), "emulator_vs_csim": exact_events(sim, sim)}
    eq = combine({"model_vs_emulator": result, "emulator_vs_csim": compare(sim, sim)}, exact)
    assert eq["bit_exact_fraction"] == 0.75
    assert eq["first_mismatches"] == [1]
    assert "lowering" in verdict(eq, mode="bit_exact", required_fraction=1.0, required_argmax=0.99)
    assert verdict(eq, mode="bit_exact", required_fraction=0.75, required_argmax=0.99) is None
    assert verdict(eq, mode="argmax", required_fraction=1.0, required_argmax=0.99) is None
    # The backend legs stay exact whatever the model: a C simulation that differs fails a float model too.
    broken = combine({"model_vs_emulator": compare(sim, sim), "emulator_vs_csim": result},
                     {"emulator_vs_csim": exact_events(ref, sim)})
    assert "HLS backend" in verdict(broken, mode="argmax", required_fraction=1.0, required_argmax=0.99)


def test_compare_accepts_multiple_outputs() -> None:
    a = [np.zeros((3, 2)), np.ones((3, 1))]
    assert compare(a, [x.copy() for x in a])["bit_exact_fraction"] == 1.0


def test_failed_testbench_fails_the_verdict() -> None:
    result = {**compare(np.ones((2, 2)), np.ones((2, 2))), "testbench": {"passed": False, "summary": "FAIL: 1"}}
    assert "golden vectors" in verdict(result, mode="bit_exact", required_fraction=1.0, required_argmax=0.99)


def test_staging_moves_on_commit_and_cleans_on_error(tmp_path: Path) -> None:
    project, scripts = tmp_path / "hls_projects" / "m", tmp_path / "vivado_scripts" / "m"
    with Staging(project, scripts) as s:
        s.project.mkdir(parents=True)
        (s.project / "a.txt").write_text("new")
        s.scripts.mkdir(parents=True)
        s.commit()
    assert (project / "a.txt").read_text() == "new"
    def half_written() -> None:
        with Staging(project, scripts) as s:
            s.project.mkdir(parents=True)
            (s.project / "a.txt").write_text("half")
            raise RuntimeError

    with pytest.raises(RuntimeError):
        half_written()
    assert (project / "a.txt").read_text() == "new"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".trigger-")]
