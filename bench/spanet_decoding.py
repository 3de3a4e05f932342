"""How much the two-top decoding loses: greedy against the joint search over k candidates per top.

Scores every triplet of the fully matched 6-jet test events of `configs/spanet_ttbar.yaml` with the negative
chi-square of its two masses (optionally plus a soft bonus per b-tagged b slot), decodes them as the firmware
does (`trigger.design.spanet.decode_positions`) and compares with the chi-square's full search over all
assignments. Writes bench/results/spanet_decoding.json.

    python bench/spanet_decoding.py [--events 3000] [--tag-bonus 3]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from trigger.baselines.chi2 import chi2_assign, four_vectors, invariant_mass
from trigger.config import load_config
from trigger.data import load
from trigger.design.spanet import assign_from_scores
from trigger.families import family_class
from trigger.families.spanet import efficiencies

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--tag-bonus", type=float, default=3.0)
    args = parser.parse_args()
    cfg = load_config(ROOT / "configs" / "spanet_ttbar.yaml")
    family = family_class("spanet")(cfg)
    data = load(ROOT / cfg.data.file, fractions=cfg.data.fractions, seed=cfg.data.split_seed)
    test = family.prepare(data).test
    n = family.max_jets
    rows = np.flatnonzero(test.meta["fully_matched"] & (test.meta["n_jets"] == 6))[: args.events]
    meta = {k: v[rows] for k, v in test.meta.items()}
    jets, mask = meta["jets"][:, :n], test.x[1][rows]
    p = four_vectors(jets)
    pair = p[:, :, None] + p[:, None]
    params = family.chi2_params
    cost = (((invariant_mass(pair[:, None] + p[:, :, None, None]) - params.m_top) / params.sigma_top) ** 2
            + ((invariant_mass(pair)[:, None] - params.m_w) / params.sigma_w) ** 2)  # [b, q, q']
    tagged = (jets[..., 4] > 0.5)[:, :, None, None]
    result: dict[str, dict[str, float]] = {}
    for name, score in (("masses", -cost), ("masses + soft b-tag", -cost + args.tag_bonus * tagged)):
        scores = np.stack([score, score], axis=1)
        row = {}
        for label, k in (("greedy", 0), ("joint 1", 1), ("joint 2", 2), ("joint 4", 4), ("joint 8", 8)):
            best = assign_from_scores(scores, mask, k)
            chosen = np.where(best[..., None] >= 0, np.stack([best // n ** 2, best // n % n, best % n], -1), -1)
            row[label] = 100 * efficiencies(chosen, meta)["by_multiplicity"]["6"]["event"]
        result[name] = row
    for use_btag, name in ((False, "masses"), (True, "masses + hard b-tag (chi2_btag)")):
        chosen, _ = chi2_assign(jets, meta["n_jets"], replace(params, use_btag=use_btag), n)
        result.setdefault(name, {})["full search"] = 100 * efficiencies(chosen, meta)["by_multiplicity"]["6"]["event"]
    out = {"events": len(rows), "tag_bonus": args.tag_bonus, "full_event_efficiency_pct": result}
    print(json.dumps(out, indent=1))
    path = ROOT / "bench" / "results" / "spanet_decoding.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
