"""The scheduler replay (explorer.analysis.replay) on hand-made learning curves."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from explorer.analysis import asha, replay
from explorer.analysis.report import scheduler_replay

BUDGET = 9


def curve(final: float, rate: float = 0.8) -> np.ndarray:
    """A learning curve rising from 0.3 towards `final`, flattening as it goes."""
    t = np.arange(1, BUDGET + 1)
    return final - (final - 0.3) * np.exp(-rate * t)


def sweep(networks: dict[str, tuple[float, float]], cut: dict[str, int] | None = None):
    """Rows and curves of a sweep: trial -> (size, final accuracy); `cut` ends a
    trial's curve early (a stopped trial)."""
    rows, curves = [], []
    for tid, (size, final) in networks.items():
        epochs = (cut or {}).get(tid, BUDGET)
        rows.append({"trial_id": tid, "status": "ok", "params": size})
        acc = curve(final)[:epochs]
        curves += [{"trial_id": tid, "epoch": e + 1, "accuracy": a} for e, a in enumerate(acc)]
    return pd.DataFrame(rows), pd.DataFrame(curves)


# Four small networks on the front, each less accurate than any large one would be
# if it were good; one large network on the front; seven large ones that the small
# ones dominate.
SMALL = {f"s{i}": (10.0 * (i + 1), 0.70 + 0.02 * i) for i in range(4)}
LARGE = {f"l{i}": (100.0 + 10 * i, 0.62 + 0.01 * i) for i in range(7)}
NETWORKS = {**SMALL, **LARGE, "big": (200.0, 0.85)}


def test_full_curves_keeps_only_trials_trained_to_the_end():
    rows, curves = sweep(NETWORKS, cut={"l0": 3})
    rows.loc[rows["trial_id"] == "l1", "status"] = "failed"
    data = replay.full_curves(rows, curves)
    assert data.budget == BUDGET
    assert set(data.trials) == set(NETWORKS) - {"l0", "l1"}
    assert data.size["big"] == 200.0 and len(data.accuracy["s0"]) == BUDGET


def test_replay_grid_spends_everything_and_the_pareto_scheduler_keeps_the_front():
    got = replay.replay(replay.full_curves(*sweep(NETWORKS)), orders=10, seed=3)
    f = got.figures
    assert got.front == 5 and got.trials == len(NETWORKS)
    assert f.loc["grid", "total_compute"] == 1.0 and f.loc["grid", "front_recall"] == 1.0
    assert 0 < f.loc["grid", "compute_to_95pct"] <= 1.0
    # ours never throws away a network on the front, and spends less than the grid
    assert f.loc["pareto", "front_recall"] == 1.0
    assert f.loc["pareto", "total_compute"] < 1.0
    # accuracy alone stops the small networks that belong on the front
    assert f.loc["asha", "front_recall"] < 1.0
    assert f.loc["asha", "total_compute"] < f.loc["pareto", "total_compute"]
    line = got.key_values().split()
    assert len(line) == 3 * len(replay.SCHEDULERS) and line[0].startswith("grid_compute_to_95pct=")


def test_moasha_decides_as_syne_tune():
    """Decisions checked against syne-tune 0.16.0's MOASHA (metrics [-accuracy, size],
    do_minimize), fed the same results."""
    sizes = {"a": 10.0, "b": 20.0, "c": 30.0}
    q = asha.Moasha(BUDGET, 3, sizes)
    assert not q.decide("c", 1, 0.9)  # the first result at a rung goes on
    assert q.decide("b", 1, 0.5)  # from the second on it is judged: 1/2 > 1/3
    # all three on one front; sorted [c, a, b] (epsilon-net over raw sizes), and the
    # rank read is that of the index sorted last, b's (1): 1/3 is not > 1/3
    assert not q.decide("a", 1, 0.4)
    # a chain (more accurate is smaller): the new, best trial stops, since the
    # index sorted last (the worst, the third to arrive) is 2, and 2/4 > 1/3 (sic)
    chain = {0: 20, 1: 30, 2: 40, 3: 10}
    decide = [(i, 1, acc) for i, acc in enumerate((0.8, 0.7, 0.6, 0.9))]
    m = asha.Moasha(BUDGET, 3, chain)
    assert [m.decide(*d) for d in decide] == [False, True, True, True]
    # read at its own place (first of four), the best trial goes on
    m = asha.Moasha(BUDGET, 3, chain, own_rank=True)
    assert [m.decide(*d) for d in decide] == [False, True, True, False]
    assert not asha.Moasha(BUDGET, 3, sizes).decide("a", 2, 0.1)  # not a rung


def test_asha_is_ray_tunes_own():
    ray_asha = asha.RayAsha(BUDGET, 3)
    assert not ray_asha.decide("c", 1, 0.9)  # nothing recorded: no cutoff
    assert ray_asha.decide("b", 1, 0.5)  # below the 2/3 percentile of [0.9]
    assert ray_asha.decide("a", 1, 0.4)
    assert not ray_asha.decide("d", 1, 0.9)  # above the cutoff of [0.9, 0.5, 0.4], 0.63
    assert not ray_asha.decide("c", 2, 0.1)  # not a rung
    assert not ray_asha.decide("c", BUDGET, 0.1)  # finished


def test_replay_needs_four_full_curves():
    rows, curves = sweep(dict(list(NETWORKS.items())[:3]))
    with pytest.raises(ValueError, match="at least 4 trials"):
        replay.replay(replay.full_curves(rows, curves))


def test_the_report_replays_a_sweep_with_curves_and_not_one_without():
    rows, curves = sweep(NETWORKS)
    said, table = scheduler_replay(rows, curves, {"accuracy": "max", "params": "min"})
    assert said.startswith(f"{len(NETWORKS)} trials x {BUDGET} epochs, true front 5")
    assert list(table["scheduler"]) == list(replay.SCHEDULERS)
    assert scheduler_replay(rows, None, {"accuracy": "max", "params": "min"}) is None
    one_epoch = curves[curves["epoch"] == 1]
    assert scheduler_replay(rows, one_epoch, {"accuracy": "max", "params": "min"}) is None


def test_the_pareto_aware_order_trains_the_ends_of_the_front_first():
    # the front is the smallest and the largest network; six in between are dominated
    n, sizes = 8, [10.0, 12.0, 15.0, 20.0, 30.0, 40.0, 60.0, 100.0]
    final = {0: 0.6, 7: 0.9}
    networks = {f"n{i}": (size, final.get(i, 0.5)) for i, size in enumerate(sizes)}
    data = replay.full_curves(*sweep(networks))
    ref = replay.Reference.of(data)
    order = [f"n{i}" for i in (3, 5, 1, 7, 2, 0, 6, 4)]  # the ends arrive late
    spread = replay.simulate("grid_spread", order, data, 2, 3, ref)
    # both ends start at once and finish first: the whole hypervolume, 2 of 8 trained
    assert spread["at95"] == 2 * BUDGET
    arrival = replay.simulate("grid", order, data, 2, 3, ref)
    assert arrival["at95"] == 6 * BUDGET and spread["spent"] == arrival["spent"] == n * BUDGET
    assert replay.simulate("pareto", order, data, 2, 3, ref)["at95"] == 2 * BUDGET


def test_subspaces_replay_whole_architectures_against_their_own_grid():
    # the ends-first space again, two seeds of each architecture
    sizes = [10.0, 12.0, 15.0, 20.0, 30.0, 40.0, 60.0, 100.0]
    final = {0: 0.6, 7: 0.9}
    networks = {
        f"n-p{i:04d}-s{k}": (size, final.get(i, 0.5))
        for i, size in enumerate(sizes)
        for k in (0, 1)
    }
    data = replay.full_curves(*sweep(networks))
    assert replay.architecture("n-p0007-s1") == "n-p0007"
    # two architectures a draw are four trials (both seeds), enough to replay
    parts = replay.subspaces(data, 2, draws=5, schedulers=("grid", "grid_spread", "pareto"))
    assert parts.loc["grid", "ratio_mean"] == 1.0 and parts.loc["grid", "worse_than_grid"] == 0
    assert parts.loc["grid_spread", "recall_min"] == 1.0 and parts.loc["pareto", "recall_min"] == 1
    # the whole space: one seed of each end trained first reaches the hypervolume
    whole = replay.subspaces(data, 8, draws=2, schedulers=("grid_spread",), orders=4)
    assert 0 < whole.loc["grid_spread", "ratio_mean"] < 1.0
    for bad in (1, 9):
        with pytest.raises(ValueError, match="subspaces: expected 2 to 8 architectures"):
            replay.subspaces(data, bad)


def test_a_paused_trial_is_promoted_when_its_rival_ends_worse_and_resumes_where_it_paused():
    # a: small, ahead at the first rung, then it diverges; b: large, behind at the rung
    t = np.arange(1, BUDGET + 1)
    a = 0.5 - 0.04 * (t - 1)
    b = 0.3 + 0.05 * (t - 1)
    networks = {"a": (10.0, a), "b": (20.0, b), "c": (5.0, 0.2 + 0 * t), "d": (6.0, 0.21 + 0 * t)}
    rows = pd.DataFrame(
        [{"trial_id": k, "status": "ok", "params": v[0]} for k, v in networks.items()]
    )
    curves = pd.DataFrame(
        [
            {"trial_id": k, "epoch": e + 1, "accuracy": acc}
            for k, (_, c) in networks.items()
            for e, acc in enumerate(c)
        ]
    )
    data = replay.full_curves(rows, curves)
    ref = replay.Reference.of(data, [-0.2, 22.0])
    trace = []
    out = replay.simulate("pareto_arrival", ["a", "b", "c", "d"], data, 2, 3, ref, trace=trace)
    b_epochs = [(time, e, said) for time, tid, e, said in trace if tid == "b"]
    assert b_epochs[0][1:] == (1, "pause")  # dominated at the rung by a, still training
    assert [e for _, e, _ in b_epochs] == list(range(1, BUDGET + 1))  # then resumed, no repeat
    assert b_epochs[1][0] > b_epochs[0][0] + 1  # after a wait
    assert "b" in out["finished"] and out["spent"] == len(trace)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 3))
def test_every_trial_trains_its_epochs_in_order_once_whatever_the_scheduler(seed, workers):
    rng = np.random.default_rng(seed)
    n = 9
    sizes = rng.choice([10.0, 20.0, 40.0], n)  # ties
    rows = pd.DataFrame({"trial_id": [f"t{i}" for i in range(n)], "status": "ok", "params": sizes})
    curves = pd.DataFrame(  # noisy, non-monotone curves
        [
            {"trial_id": f"t{i}", "epoch": e, "accuracy": float(rng.uniform(0.1, 0.9))}
            for i in range(n)
            for e in range(1, BUDGET + 1)
        ]
    )
    data = replay.full_curves(rows, curves)
    ref = replay.Reference.of(data, [-0.0, 50.0])
    order = list(rng.permutation(data.trials))
    for name in replay.SCHEDULERS:
        trace = []
        out = replay.simulate(name, order, data, workers, 3, ref, trace=trace)
        epochs = {}
        for _, tid, e, _ in trace:
            epochs.setdefault(tid, []).append(e)
        for tid, es in epochs.items():
            assert es == list(range(1, len(es) + 1)), (name, tid, es)
        assert out["finished"] == {t for t, es in epochs.items() if es[-1] == BUDGET}
        assert out["spent"] == len(trace) <= n * BUDGET
        if name == "grid":
            assert out["spent"] == n * BUDGET
        times = [time for time, *_ in trace]
        assert times == sorted(times)
        busy = {}
        for time, *_ in trace:
            busy[time] = busy.get(time, 0) + 1
        assert max(busy.values()) <= workers  # no worker trains two epochs in one step


def test_full_curves_leaves_out_diverged_trials_and_unknown_sizes():
    rows, curves = sweep(NETWORKS)
    curves.loc[(curves["trial_id"] == "l2") & (curves["epoch"] == 4), "accuracy"] = np.nan
    rows.loc[rows["trial_id"] == "l3", "params"] = np.nan
    data = replay.full_curves(rows, curves)
    assert "l2" not in data.trials and "l3" not in data.trials and "l4" in data.trials
    with pytest.raises(ValueError, match="size: expected a column"):
        replay.full_curves(rows, curves, "bytes_int9")
    assert replay.size_column({"accuracy": "max", "bytes_int8": "min"}) == "bytes_int8"
    assert replay.size_column({"accuracy": "max", "top5": "max"}) == "params"
