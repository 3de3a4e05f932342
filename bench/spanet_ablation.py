"""Float-twin ablation of the SPA-Net config: one short training per variant, full-event efficiencies by jet
multiplicity under greedy and joint decoding.

Each variant is `configs/spanet_ttbar.yaml` with dotted overrides (`architecture.<key>`, `preprocessing.<key>`,
`training.<key>`, JSON values); its float twin trains for `--epochs` on the shipped data (same split, seed and
test events as `trigger compile`) and its logits are decoded as on chip (`SpaNet.decode`) with 0 (greedy), 2
and 4 candidates, on the test events and, with 4 candidates, on the validation events (a second sample of about
the same size: differences below half a point at 6 jets are within the spread of one screen).
`--train-fraction f` trains on a random fraction f of the training events (before the augmentation), for the
learning curve. Float only: a fast screen of what pays, ~3 min a variant on 2 cores; the shipped config's
quantized and C-simulated figures come from `trigger compile` (report.json). Writes
bench/results/spanet_ablation.json.

    python bench/spanet_ablation.py [--epochs 12] [--train-fraction 1] '{}' '{"architecture.heads": 2}' ...
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from trigger.config import parse_config
from trigger.data import load
from trigger.families import family_class
from trigger.families.spanet import MULTIPLICITIES, efficiencies
from trigger.fixed_point import on_input_grid
from trigger.train import train

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = (0, 2, 4)


def variant(overrides: dict[str, Any], epochs: int, train_fraction: float = 1.0) -> dict[str, Any]:
    """Train the float twin of the shipped config with `overrides`; its efficiencies per decoding."""
    raw = yaml.safe_load((ROOT / "configs" / "spanet_ttbar.yaml").read_text())
    for dotted, value in overrides.items():
        section, key = dotted.split(".", 1)
        (raw["model"][section] if section in ("architecture", "preprocessing") else raw[section])[key] = value
    cfg = parse_config(raw)
    family = family_class("spanet")(cfg)
    data = load(ROOT / cfg.data.file, fractions=cfg.data.fractions, seed=cfg.data.split_seed)
    if train_fraction < 1.0:
        events = len(data.train["jets"])
        keep = np.sort(np.random.default_rng(0).permutation(events)[: round(train_fraction * events)])
        data.train = {k: v[keep] for k, v in data.train.items()}
    prepared = family.prepare(data)
    for name in ("train", "val", "test"):
        setattr(prepared, name, on_input_grid(getattr(prepared, name), cfg.quantization.input)[0])
    start = time.perf_counter()
    model, history = train(family, prepared, replace(cfg.training, epochs=epochs), quantized=False)
    logits = model.predict(prepared.test.x, batch_size=2048, verbose=0)
    row: dict[str, Any] = {"overrides": overrides, "train_fraction": train_fraction,
                           "train_events": len(prepared.train.y), "epochs_run": len(history["loss"]),
                           "best_val_loss": min(history["val_loss"]), "train_s": time.perf_counter() - start}
    for candidates in CANDIDATES:
        family.candidates = candidates
        row[f"candidates_{candidates}"] = event_efficiencies(family, logits, prepared.test)
    family.candidates = 4
    val_logits = model.predict(prepared.val.x, batch_size=2048, verbose=0)
    row["val_candidates_4"] = event_efficiencies(family, val_logits, prepared.val)
    return row


def event_efficiencies(family: Any, logits: np.ndarray, split: Any) -> dict[str, float]:
    """Full-event efficiency per multiplicity of `logits` on `split`, decoded with the family's candidates."""
    by = efficiencies(family.decode(logits, split), split.meta)["by_multiplicity"]
    return {label: by[label]["event"] for label, _, _ in MULTIPLICITIES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", help="JSON objects of dotted overrides; '{}' is the shipped config")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--train-fraction", type=float, default=1.0, help="fraction of the training events (0..1]")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "spanet_ablation.json")
    args = parser.parse_args()
    if not 0.0 < args.train_fraction <= 1.0:
        parser.error(f"--train-fraction: must be in (0, 1], got {args.train_fraction}")
    rows = []
    for text in args.variants:
        row = variant(json.loads(text), args.epochs, args.train_fraction)
        rows.append(row)
        effs = "  ".join(f"{c}: " + "/".join(f"{100 * v:.1f}" for v in row[f"candidates_{c}"].values())
                         for c in CANDIDATES)
        effs += "  validation, 4: " + "/".join(f"{100 * v:.1f}" for v in row["val_candidates_4"].values())
        print(f"{text}  val_loss {row['best_val_loss']:.4f}  candidates {effs}  ({row['train_s']:.0f} s)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"epochs": args.epochs, "train_fraction": args.train_fraction,
                                    "basis": "float twin, test (and validation) split, fully matched events",
                                    "rows": rows}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
