"""The ehvi proposer: its acquisition, its choices on hand-made spaces, and the
baselines it is compared with (benchmarks/search_replay.py)."""

import itertools

import moocore
import numpy as np
import pytest

from explorer.analysis import search_replay as sr
from explorer.analysis.replay import Curves
from explorer.proposer import FrontProposer, ehvi, ehvi_2d, encode


def _front(rng, n=8):
    pts = np.column_stack([rng.uniform(1, 10, n), rng.uniform(0.5, 0.9, n)])
    return pts[moocore.is_nondominated(pts * [1, -1])]


def test_ehvi_is_the_expected_improvement_by_monte_carlo():
    rng = np.random.default_rng(1)
    front, ref = _front(rng), np.array([11.0, 0.4])
    size, mu, sd = rng.uniform(1, 12, 6), rng.uniform(0.5, 1.0, 6), rng.uniform(0.01, 0.1, 6)
    exact = ehvi_2d(front, ref, size, mu, sd)
    hv = lambda x: moocore.hypervolume(x * [1, -1], ref=ref * [1, -1])  # noqa: E731
    base = hv(front)
    for i in range(6):
        draws = mu[i] + sd[i] * rng.standard_normal(5000)
        gains = [
            hv(np.vstack([front, [size[i], a]])) - base if size[i] < ref[0] and a > ref[1] else 0
            for a in draws
        ]
        se = np.std(gains) / np.sqrt(len(gains))  # the Monte Carlo estimate's own error
        assert abs(exact[i] - np.mean(gains)) <= 4 * se + 1e-9
    # the moocore form, for several known objectives, agrees with the exact one in 2-D
    assert ehvi(front, ref, size[:, None], mu, sd) == pytest.approx(exact, rel=1e-9, abs=1e-12)
    # a candidate no smaller than the reference size, or sure to be below the front,
    # adds nothing
    assert ehvi_2d(front, ref, [11.0, 12.0], [0.99, 0.99], [0.01, 0.01]).tolist() == [0, 0]
    top = front[:, 1].max()
    assert ehvi_2d(front, ref, [10.5], [top - 0.5], [1e-6])[0] == pytest.approx(0, abs=1e-12)


KEYS = {"a": [1, 2, 4, 8], "b": [0.25, 0.5, 0.75], "c": ["x", "y", "z"], "d": [16, 32, 64]}


def synthetic_pool(seed: int = 0, budget: int = 4) -> sr.Pool:
    """A hand-made space of 108 networks whose accuracy is a known function of size
    and of `c`, with curves that rise to it."""
    rng = np.random.default_rng(seed)
    values = [dict(zip(KEYS, combo, strict=True)) for combo in itertools.product(*KEYS.values())]
    acc, size = {}, {}
    for j, v in enumerate(values):
        s = v["a"] * v["d"] * (1 + v["b"]) * 1000
        final = 0.7 + 0.04 * np.log(s / 1000) + {"x": 0, "y": 0.03, "z": -0.02}[v["c"]]
        final += rng.normal(0, 0.005)
        curve = final - 0.1 * np.exp(-np.arange(1.0, budget + 1)) + rng.normal(0, 0.003, budget)
        curve[-1] = final
        acc[f"p{j:04d}"], size[f"p{j:04d}"] = curve, s
    return sr.Pool(Curves(acc, size, budget, "size"), values)


def test_ehvi_finds_a_known_front_before_random_search():
    pool = synthetic_pool()
    got = sr.compare(pool, ["random", "ehvi", "ehvi_pareto"], seeds=4)
    assert got.loc["ehvi", "compute_to_95pct"] < 0.6 * got.loc["random", "compute_to_95pct"]
    assert got.loc["ehvi", "compute_to_99pct"] < got.loc["random", "compute_to_99pct"]
    assert got.loc["ehvi", "front_recall_at_25pct"] > got.loc["random", "front_recall_at_25pct"]
    assert got.loc["ehvi_pareto", "compute_to_95pct"] < got.loc["random", "compute_to_95pct"]


def test_ehvi_never_proposes_a_point_twice():
    pool = synthetic_pool(seed=3)
    sizes = [[pool.data.size[t]] for t in pool.trials]
    p = FrontProposer(encode(pool.values, list(KEYS)), sizes, pool.data.budget, seed=0)
    chosen = []
    while got := p.propose(3):
        chosen += got
        for i in got:
            for t, a in enumerate(pool.data.accuracy[pool.trials[i]], start=1):
                p.observe(i, t, a)
            p.end(i)
    assert sorted(chosen) == list(range(len(pool.trials)))
    assert p.propose(1) == []


def test_optuna_baselines_are_optunas_own_samplers():
    import optuna

    pool = synthetic_pool(seed=5)
    for name, sampler in (("tpe", optuna.samplers.TPESampler),
                          ("nsga2", optuna.samplers.NSGAIISampler)):  # fmt: skip
        m = sr.OptunaPool(pool, name, seed=0)
        assert isinstance(m.study.sampler, sampler)
        chosen = []
        for _ in range(30):
            (i,) = m.propose(1)
            m.observe(i, pool.data.budget, pool.data.accuracy[pool.trials[i]][-1])
            m.end(i)
            chosen.append(i)
        assert len(set(chosen)) == 30  # the nearest *untrained* pool point
        done = m.study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
        assert len(done) == 30
        for trial, i in zip(done, chosen, strict=True):  # Optuna is told what was trained
            assert trial.params == {k: repr(pool.values[i][k]) for k in KEYS}
            assert trial.values == [
                pool.data.accuracy[pool.trials[i]][-1],
                pool.data.size[pool.trials[i]],
            ]


def test_the_sweeps_searcher_respects_constraints_and_resumes_from_rows(tiny_space):
    import pandas as pd
    from ray.tune.search import Searcher

    from explorer import front_search, rows
    from explorer import space as spaces

    extra = "  squeeze_ratio: {values: [0.125, 0.25, 0.5]}\n  pct3x3: {values: [0.25, 0.75]}"
    s = spaces.load(tiny_space("fs", base_e="{values: [8, 16, 24, 32]}", extra=extra,
                               search="{method: ehvi, num_samples: 24, seeds: 2}"))  # fmt: skip
    s = s.__class__(**{**s.__dict__, "constraints": s.constraints.model_copy(
        update={"max_params": 20000})})  # fmt: skip
    allowed = {p.index for p in spaces.candidates(s) if not rows.constraint_violations(s, p)}
    assert 0 < len(allowed) < 24
    search = front_search.FrontSearch(s, [[0], [1]])
    seen, n = [], 0
    while (cfg := search.suggest(f"t{n}")) != Searcher.FINISHED:
        c = cfg["cfg"]
        seen.append((c["index"], tuple(c["seeds"])))
        params = rows.known_objectives(spaces.make_point(s, c["index"], c["values"]))["params"]
        search.on_trial_result(f"t{n}", {"epoch": 1, "accuracy": 0.5 + params / 1e6})
        search.on_trial_complete(f"t{n}", {"epoch": 1, "accuracy": 0.5 + params / 1e6})
        n += 1
    # every allowed point once, with each seed group; nothing over the constraint
    assert sorted(seen) == sorted((i, (g,)) for i in allowed for g in (0, 1))
    # resumed from a sweep folder's rows and curves: a point with all its seeds is never
    # proposed again; one interrupted after its first seed trains its second first
    done, half = sorted(allowed)[:3], sorted(allowed)[3]
    have = [(i, s) for i in done for s in (0, 1)] + [(half, 0)]
    table = pd.DataFrame({"point": [i for i, _ in have], "seed": [s for _, s in have],
                          "trial_id": [rows.trial_id("fs", i, s) for i, s in have]})  # fmt: skip
    curves = pd.DataFrame({"trial_id": table["trial_id"], "epoch": 1, "accuracy": 0.6})
    again = front_search.FrontSearch(s, [[0], [1]], table, curves)
    left = []
    while (cfg := again.suggest(f"r{len(left)}")) != Searcher.FINISHED:
        left.append((cfg["cfg"]["index"], tuple(cfg["cfg"]["seeds"])))
        again.on_trial_complete(f"r{len(left) - 1}", {"epoch": 1, "accuracy": 0.6})
    assert left[0] == (half, (1,))
    rest = allowed - set(done) - {half}
    assert sorted(left[1:]) == sorted((i, (g,)) for i in rest for g in (0, 1))
    assert again.proposer.curves[again.at[done[0]]] == {1: 0.6}  # the rows fed the model
