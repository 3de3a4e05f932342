"""Float-twin ablation of the SPA-Net config: one short training per variant, full-event efficiencies by jet
multiplicity under greedy and joint decoding.

Each variant is `configs/spanet_ttbar.yaml` with dotted overrides (`architecture.<key>`, `preprocessing.<key>`,
`training.<key>`, JSON values); its float twin trains for `--epochs` on the shipped data (same split, seed and
test events as `trigger compile`) and its logits are decoded as on chip (`SpaNet.decode`) with 0 (greedy), 2
and 4 candidates. Float only: a fast screen of what pays, ~3 min a variant on 2 cores; the shipped config's
quantized and C-simulated figures come from `trigger compile` (report.json). Writes
bench/results/spanet_ablation.json.

    python bench/spanet_ablation.py [--epochs 12] '{}' '{"architecture.heads": 2}' ...
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from trigger.config import parse_config
from trigger.data import load
from trigger.families import family_class
from trigger.families.spanet import MULTIPLICITIES, efficiencies
from trigger.fixed_point import on_input_grid
from trigger.train import train

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = (0, 2, 4)


def variant(overrides: dict[str, Any], epochs: int) -> dict[str, Any]:
    """Train the float twin of the shipped config with `overrides`; its efficiencies per decoding."""
    raw = yaml.safe_load((ROOT / "configs" / "spanet_ttbar.yaml").read_text())
    for dotted, value in overrides.items():
        section, key = dotted.split(".", 1)
        (raw["model"][section] if section in ("architecture", "preprocessing") else raw[section])[key] = value
    cfg = parse_config(raw)
    family = family_class("spanet")(cfg)
    data = load(ROOT / cfg.data.file, fractions=cfg.data.fractions, seed=cfg.data.split_seed)
    prepared = family.prepare(data)
    for name in ("train", "val", "test"):
        setattr(prepared, name, on_input_grid(getattr(prepared, name), cfg.quantization.input)[0])
    start = time.perf_counter()
    model, history = train(family, prepared, replace(cfg.training, epochs=epochs), quantized=False)
    logits = model.predict(prepared.test.x, batch_size=2048, verbose=0)
    row: dict[str, Any] = {"overrides": overrides, "epochs_run": len(history["loss"]),
                           "best_val_loss": min(history["val_loss"]), "train_s": time.perf_counter() - start}
    for candidates in CANDIDATES:
        family.candidates = candidates
        by = efficiencies(family.decode(logits, prepared.test), prepared.test.meta)["by_multiplicity"]
        row[f"candidates_{candidates}"] = {label: by[label]["event"] for label, _, _ in MULTIPLICITIES}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", help="JSON objects of dotted overrides; '{}' is the shipped config")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "spanet_ablation.json")
    args = parser.parse_args()
    rows = []
    for text in args.variants:
        row = variant(json.loads(text), args.epochs)
        rows.append(row)
        effs = "  ".join(f"{c}: " + "/".join(f"{100 * v:.1f}" for v in row[f"candidates_{c}"].values())
                         for c in CANDIDATES)
        print(f"{text}  val_loss {row['best_val_loss']:.4f}  candidates {effs}  ({row['train_s']:.0f} s)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"epochs": args.epochs, "basis": "float twin, test split, fully matched events",
                                    "rows": rows}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
