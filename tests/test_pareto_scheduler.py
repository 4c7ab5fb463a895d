"""The Pareto-aware scheduler's decisions on hand-made learning curves."""

import math

import pytest

from explorer.pareto_scheduler import (
    CONTINUE,
    PAUSE,
    STOP,
    ParetoRungs,
    spread_order,
    start_order,
)

OBJ = {"accuracy": "max", "bytes_int8": "min"}


def rungs(**kw) -> ParetoRungs:
    return ParetoRungs(OBJ, max_t=9, grace=1, eta=3, **kw)  # rungs at epochs 1 and 3


def run(s: ParetoRungs, name: str, size: int, curve: list[float]) -> list[str]:
    """Feed a trial's curve epoch by epoch until the scheduler stops it."""
    said = []
    for t, acc in enumerate(curve, 1):
        said.append(s.on_result(name, t, {"accuracy": acc, "bytes_int8": size}))
        if said[-1] == STOP:
            return said
    s.on_complete(name, {"epoch": len(curve), "accuracy": curve[-1], "bytes_int8": size})
    return said


def test_rungs_follow_successive_halving():
    assert rungs().rungs == [1, 3]
    assert ParetoRungs(OBJ, max_t=12, grace=1, eta=2).rungs == [1, 2, 4, 8]


def test_a_small_network_is_never_stopped_for_accuracy_alone():
    s = rungs()
    run(s, "big", 100_000, [0.80, 0.85, 0.88, 0.89, 0.90, 0.90, 0.91, 0.91, 0.91])
    said = run(s, "small", 10_000, [0.40, 0.41, 0.42, 0.42, 0.42, 0.43, 0.43, 0.43, 0.43])
    assert STOP not in said and len(said) == 9  # far less accurate, but nothing is smaller


def test_a_dominated_large_network_is_stopped_at_its_first_rung():
    s = rungs()
    run(s, "small", 10_000, [0.80, 0.85, 0.88, 0.89, 0.90, 0.90, 0.91, 0.91, 0.91])
    said = run(s, "large", 100_000, [0.50, 0.51, 0.52])
    assert said == [STOP]  # larger and, even optimistically, less accurate
    assert s.why["large"] == "stopped at epoch 1: dominated by networks that finished"


def test_a_large_network_still_climbing_goes_on_a_flat_one_stops():
    s = rungs()
    run(s, "small", 10_000, [0.80, 0.85, 0.86, 0.86, 0.86, 0.86, 0.86, 0.86, 0.86])
    # epoch 1: within what the small one gained after its epoch 1 (+0.06);
    # epoch 3: 0.845 after +0.015 an epoch could still pass 0.86 by epoch 9
    said = run(s, "large", 100_000, [0.82, 0.83, 0.845, 0.86, 0.87, 0.88, 0.89, 0.90, 0.92])
    assert STOP not in said
    # with only the small one finished, the same size flat at 0.80: kept at epoch 1
    # (0.80 + the 0.06 the small one gained after it is not short of 0.86),
    # stopped at epoch 3 (no gain of its own left, and none seen after 3)
    s = rungs()
    run(s, "small", 10_000, [0.80, 0.85, 0.86, 0.86, 0.86, 0.86, 0.86, 0.86, 0.86])
    said = run(s, "flat", 100_000, [0.80, 0.80, 0.80])
    assert said == [CONTINUE, CONTINUE, STOP]


def test_trials_at_the_same_rung_judge_each_other():
    s = rungs(min_margin=0.02)
    assert s.on_result("a", 1, {"accuracy": 0.80, "bytes_int8": 20_000}) == CONTINUE
    # larger and 0.10 worse at the same epoch: dominated by a, beyond the margin; a has
    # not finished, so b pauses (with its checkpoint) rather than stops
    assert s.on_result("b", 1, {"accuracy": 0.70, "bytes_int8": 30_000}) == PAUSE
    # larger but within the margin: might still overtake
    assert s.on_result("c", 1, {"accuracy": 0.79, "bytes_int8": 30_000}) == CONTINUE
    # between rungs nothing is decided
    assert s.on_result("b2", 2, {"accuracy": 0.10, "bytes_int8": 90_000}) == CONTINUE


def test_a_paused_network_stops_when_what_paused_it_finishes_above_it():
    s = rungs(min_margin=0.02)
    assert s.on_result("a", 1, {"accuracy": 0.80, "bytes_int8": 20_000}) == CONTINUE
    assert s.on_result("b", 1, {"accuracy": 0.70, "bytes_int8": 30_000}) == PAUSE
    assert s.review() == ([], [])  # a is still training: b waits
    for t, acc in enumerate([0.82, 0.84, 0.85, 0.86, 0.86, 0.87, 0.87, 0.87], 2):
        s.on_result("a", t, {"accuracy": acc, "bytes_int8": 20_000})
    s.on_complete("a", {"epoch": 9, "accuracy": 0.87, "bytes_int8": 20_000})
    assert s.review() == (["b"], []) and not s.paused


def test_a_paused_network_is_promoted_when_what_paused_it_falls_short():
    s = rungs(min_margin=0.02)
    s.on_result("a", 1, {"accuracy": 0.80, "bytes_int8": 20_000})
    assert s.on_result("b", 1, {"accuracy": 0.70, "bytes_int8": 30_000}) == PAUSE
    # a smaller network finishes below b's hope: it does not dominate b
    run(s, "tiny", 5_000, [0.60, 0.62, 0.64, 0.65, 0.65, 0.66, 0.66, 0.66, 0.66])
    assert s.review() == ([], [])  # a, which paused b, may still finish above it
    s.stopped.add("a")  # a diverged (its trial errored): no longer a rival that may finish
    assert s.review() == ([], ["b"])
    s.promoted("b")
    assert not s.paused
    # b resumes where it paused and is judged at its next rung as any other trial
    assert s.on_result("b", 2, {"accuracy": 0.74, "bytes_int8": 30_000}) == CONTINUE
    assert s.on_result("b", 3, {"accuracy": 0.78, "bytes_int8": 30_000}) == CONTINUE


def test_without_checkpoints_a_dominated_network_stops_instead_of_pausing():
    s = rungs(min_margin=0.02, pause=False)
    s.on_result("a", 1, {"accuracy": 0.80, "bytes_int8": 20_000})
    assert s.on_result("b", 1, {"accuracy": 0.70, "bytes_int8": 30_000}) == STOP
    assert s.why["b"] == "stopped at epoch 1: dominated by networks still training"


def test_the_learned_metric_must_be_an_objective():
    with pytest.raises(ValueError, match="learned metric 'accuracy'"):
        ParetoRungs({"params": "min"}, max_t=9)


@pytest.mark.slow
def test_a_live_sweep_with_the_pareto_scheduler(tiny_space, tmp_path):
    from explorer import cli, results

    # at each size a network that learns and one that barely moves (lr 1e-5)
    space = tiny_space(
        "paretolive",
        base_e="{values: [8, 32]}",
        extra="  learning_rate: {values: [0.003, 0.00001]}",
        epochs=4,
        search="{method: grid, seeds: 1, scheduler: pareto, onnx_latency: false}",
    )
    out = tmp_path / "sweep"
    assert cli.main(["sweep", str(space), "--output", str(out), "--max-concurrent", "1"]) == 0
    table = results.load(out).set_index("trial_id")
    assert len(table) == 4 and set(table["status"]) <= {"ok", "stopped"}
    ok = table[table["status"] == "ok"]
    assert (ok["epochs_done"] == 4).all() and len(ok) >= 1
    stopped = table[table["status"] == "stopped"]
    assert len(stopped) >= 1 and stopped["epochs_done"].isin([1, 3]).all()  # at rungs only
    assert stopped["error"].str.contains("dominated by networks").all()  # and says why
    assert table.loc["paretolive-p0000-s0", "status"] == "ok"  # the smallest: never stopped
    # the report says what the scheduler saved
    from explorer.analysis.report import summary

    done, asked = int(table["epochs_done"].sum()), 4 * len(table)
    assert dict(summary(table.reset_index()))["trial-epochs"].startswith(f"{done:,} of {asked:,}")
    assert done < asked
    # a stopped network is dominated by a finished one no larger
    for _, r in stopped.iterrows():
        assert ((ok["params"] <= r["params"]) & (ok["accuracy"] > r["accuracy"])).any()


def test_rungs_need_eta_of_two_or_more():
    with pytest.raises(ValueError, match="eta >= 2"):
        ParetoRungs(OBJ, max_t=9, eta=1)  # would never leave its first rung


def test_a_trial_behind_by_less_than_a_finished_one_caught_up_is_not_stopped():
    s = rungs()
    # finished: a small network that gained 0.30 after epoch 1, a large one 0.15: from
    # epoch 1 on, one finished trial caught up 0.15 on another
    run(s, "a", 10_000, [0.50, 0.62, 0.70, 0.74, 0.77, 0.79, 0.80, 0.80, 0.80])
    run(s, "b", 50_000, [0.70, 0.76, 0.80, 0.82, 0.84, 0.85, 0.85, 0.85, 0.85])
    # a twin of "a" 0.05 behind it at epoch 1: even gaining 0.30 it would end below
    # "a", yet it may still catch up as much as "b" was caught up on: it goes on
    assert s.on_result("close", 1, {"accuracy": 0.45, "bytes_int8": 10_000}) == CONTINUE
    # one 0.20 behind "a" at epoch 1 is stopped
    assert s.on_result("far", 1, {"accuracy": 0.30, "bytes_int8": 10_000}) == STOP


def test_networks_start_spread_over_their_sizes_from_the_smallest():
    sizes = [[10], [1000], [100], [10], [20], [400]]  # log10: 1, 3, 2, 1, 1.3, 2.6
    # the smallest, the largest, the middle, then the widest gaps; the twin last
    assert spread_order(sizes) == [0, 1, 2, 5, 4, 3]
    # networks already trained count as started: the gap between them goes first
    assert spread_order([[20], [100]], seen=[[10], [1000]]) == [1, 0]
    # a column with a missing value is left out; equal sizes keep their order
    assert spread_order([[10, math.nan], [1000, math.nan], [100, math.nan]]) == [0, 1, 2]
    assert spread_order([[5], [5], [5]]) == [0, 1, 2]
    # two known objectives count alike, whatever their units
    two = [[1e3, 1e6], [1e5, 1e6], [1e3, 1e9], [1e5, 1e9], [1e4, 3e7]]
    assert spread_order(two)[:2] == [0, 3] and spread_order(two)[-1] == 4


def test_the_start_order_reads_only_the_objectives_known_before_training():
    objectives = {"accuracy": "max", "bytes_int8": "min"}
    known = [{"bytes_int8": 100.0, "params": 1.0}, {"bytes_int8": 10.0, "params": 1e6}]
    assert start_order(objectives, known) == [1, 0]  # by bytes, not by params
    assert start_order({"accuracy": "max"}, known) == [0, 1]  # nothing known: as given


def test_a_sweep_starts_one_seed_of_every_point_spread_over_sizes(tiny_space):
    from explorer import rows, sweep
    from explorer import space as spaces

    path = tiny_space(
        "spread",
        base_e="{values: [8, 64, 16, 32]}",
        search="{method: grid, seeds: 2, vmap_seeds: false, scheduler: pareto}",
    )
    space = spaces.load(path)
    pts = spaces.points(space)
    params = {p.index: rows.known_objectives(p)["params"] for p in pts}
    small, large = min(params, key=params.get), max(params, key=params.get)
    configs = [{"index": p.index, "seeds": g} for p in pts for g in sweep.seed_groups(space)]
    order = [(c["index"], c["seeds"]) for c in sweep.in_start_order(space, configs, pts, set())]
    assert order[:2] == [(small, [0]), (large, [0])]
    assert {i for i, _ in order[:4]} == set(params) and all(s == [1] for _, s in order[4:])
    # resumed with the two ends trained: the points between them start first
    done = {rows.trial_id("spread", i, s) for i in (small, large) for s in (0, 1)}
    left = [c for c in configs if c["index"] not in (small, large)]
    again = [c["index"] for c in sweep.in_start_order(space, left, pts, done)]
    assert set(again[:2]) == set(params) - {small, large}
    # a sweep without the Pareto-aware scheduler keeps the space's order
    plain = spaces.load(tiny_space("plain", base_e="{values: [8, 64, 16, 32]}"))
    kept = sweep.in_start_order(plain, configs, spaces.points(plain), set())
    assert kept == configs
