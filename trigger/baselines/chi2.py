"""Chi-square jet-parton assignment for all-hadronic ttbar: the classical baseline of the SPA-Net family.

For every assignment of six distinct jets to (b1, q1, q1', b2, q2, q2') the cost is
sum over tops of (m_bqq' - m_t)^2 / s_t^2 + (m_qq' - m_W)^2 / s_W^2, and the cheapest assignment wins.
Assignments that differ only by q <-> q' or t <-> tbar have the same cost and are enumerated once, so an
event with n jets costs n! / ((n - 6)! 8) evaluations (90 for 6 jets, 18 900 for 10). With `use_btag`, as
in the experiments' analyses, the b slots take b-tagged jets: both when the event has two or more tags, one
when it has one.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from functools import cache

import numpy as np

CHUNK_ELEMENTS = 20_000_000  # events x permutations evaluated at once


@dataclass(frozen=True)
class Chi2Params:
    m_top: float
    m_w: float
    sigma_top: float | None  # None: fitted on truth-matched training events by `fit_resolutions`
    sigma_w: float | None
    use_btag: bool = False


def four_vectors(jets: np.ndarray) -> np.ndarray:
    """(..., 5) jets (pt, eta, phi, mass, btag) -> (..., 4) (E, px, py, pz)."""
    pt, eta, phi, mass = (jets[..., i].astype(np.float64) for i in range(4))
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    energy = np.sqrt(px ** 2 + py ** 2 + pz ** 2 + np.maximum(mass, 0.0) ** 2)
    return np.stack([energy, px, py, pz], axis=-1)


def invariant_mass(p: np.ndarray) -> np.ndarray:
    return np.sqrt(np.maximum(p[..., 0] ** 2 - p[..., 1] ** 2 - p[..., 2] ** 2 - p[..., 3] ** 2, 0.0))


def fit_resolutions(params: Chi2Params, jets: np.ndarray, assignment: np.ndarray) -> Chi2Params:
    """Fill unset resolutions with the half-width of the central 68 % of the true triplets' masses."""
    if params.sigma_top is not None and params.sigma_w is not None:
        return params
    p = four_vectors(jets)
    rows = np.arange(len(jets))
    m_top, m_w = [], []
    for t in range(2):
        b, qa, qb = (p[rows, assignment[:, 3 * t + i]] for i in range(3))
        m_top.append(invariant_mass(b + qa + qb))
        m_w.append(invariant_mass(qa + qb))

    def width(m: list[np.ndarray]) -> float:
        lo, hi = np.percentile(np.concatenate(m), [16, 84])
        return float((hi - lo) / 2)

    return replace(params, sigma_top=params.sigma_top or width(m_top), sigma_w=params.sigma_w or width(m_w))


@cache
def permutations(n: int) -> np.ndarray:
    """(P, 6) distinct (b1, q1, q1', b2, q2, q2') with q < q' in each top and b1 < b2."""
    rows = [p for p in itertools.permutations(range(n), 6) if p[1] < p[2] and p[4] < p[5] and p[0] < p[3]]
    return np.array(rows, dtype=np.int64).reshape(-1, 6)


def chi2_assign(jets: np.ndarray, n_jets: np.ndarray, params: Chi2Params, max_jets: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Best assignment per event, (N, 2, 3) jet indices (-1 below six jets), and permutations evaluated (N,).

    The first `n_jets` (at most `max_jets`) jets of an event are its real ones.
    """
    if params.sigma_top is None or params.sigma_w is None:
        raise ValueError("chi-square resolutions are not set (fit_resolutions first)")
    n_used = np.minimum(n_jets.astype(np.int64), max_jets)
    chosen = np.full((len(jets), 2, 3), -1, dtype=np.int64)
    cost = np.zeros(len(jets), dtype=np.int64)
    for n in np.unique(n_used[n_used >= 6]):
        events = np.flatnonzero(n_used == n)
        perms = permutations(int(n))
        top1 = perms[:, 0] * n * n + perms[:, 1] * n + perms[:, 2]
        top2 = perms[:, 3] * n * n + perms[:, 4] * n + perms[:, 5]
        step = max(1, CHUNK_ELEMENTS // len(perms))
        for start in range(0, len(events), step):
            idx = events[start:start + step]
            p = four_vectors(jets[idx, :n])
            pair = p[:, :, None, :] + p[:, None, :, :]
            m_w = invariant_mass(pair)
            m_top = invariant_mass(pair[:, None, :, :, :] + p[:, :, None, None, :])
            top_cost = (((m_top - params.m_top) / params.sigma_top) ** 2
                        + ((m_w[:, None] - params.m_w) / params.sigma_w) ** 2).reshape(len(idx), -1)
            total = top_cost[:, top1] + top_cost[:, top2]
            if params.use_btag:
                tag = jets[idx, :n, 4] > 0.5
                tagged_b = tag[:, perms[:, 0]].astype(int) + tag[:, perms[:, 3]]
                total = np.where(tagged_b >= np.minimum(tag.sum(1), 2)[:, None], total, np.inf)
            best = np.argmin(total, axis=1)
            chosen[idx] = perms[best].reshape(-1, 2, 3)
        cost[events] = len(perms)
    return chosen, cost
