"""analysis.pareto, analysis.edf and analysis.plots on hand-built tables."""

import itertools
import math

import matplotlib
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure

from explorer.analysis import (
    aggregate_seeds,
    complexity_weights,
    edf,
    hypervolume,
    hypervolume_2d,
    pareto_front,
    pareto_mask,
    plots,
    preset_names,
    sensitivity,
    varied_metaparameters,
)
from explorer.results import COLUMNS, conform

matplotlib.use("Agg")  # headless; the figures never touch pyplot anyway

SIZE_ACC = {"params": "min", "accuracy": "max"}


def table(rows: list[dict]) -> pd.DataFrame:
    """A schema-conformant table (every column present, missing ones NA)."""
    return conform(pd.DataFrame(rows, columns=COLUMNS))


def points(*pairs) -> pd.DataFrame:
    """A table of (params, accuracy) pairs, ok status."""
    return pd.DataFrame(
        {"params": [p for p, _ in pairs], "accuracy": [a for _, a in pairs]}
    ).assign(status="ok")


# ---------------------------------------------------------------- pareto_mask
def test_pareto_mask_known_front_with_duplicates_and_nan():
    df = points(
        (1, 0.5),  # on: smallest but one
        (2, 0.7),  # on
        (3, 0.6),  # dominated by (2, 0.7)
        (2, 0.7),  # duplicate of an on-front point: on as well
        (4, 0.9),  # on
        (np.nan, 0.99),  # failed trial: never on the front
        (0.5, 0.4),  # on: the smallest
        (4, 0.85),  # dominated by (4, 0.9): equal in one, worse in the other
    )
    expected = [True, True, False, True, True, False, True, False]
    assert pareto_mask(df, SIZE_ACC).tolist() == expected


def test_pareto_mask_directions_matter():
    df = points((1, 0.5), (2, 0.7))
    assert pareto_mask(df, {"params": "min", "accuracy": "max"}).tolist() == [1, 1]
    assert pareto_mask(df, {"params": "max", "accuracy": "max"}).tolist() == [0, 1]
    assert pareto_mask(df, {"params": "min", "accuracy": "min"}).tolist() == [1, 0]


def test_pareto_mask_rejects_bad_objectives():
    df = points((1, 0.5))
    with pytest.raises(ValueError, match="'min' or 'max'"):
        pareto_mask(df, {"params": "smallest"})
    with pytest.raises(ValueError, match="flops"):
        pareto_mask(df, {"flops": "min"})
    with pytest.raises(ValueError, match="at least one"):
        pareto_mask(df, {})


def test_pareto_mask_reads_nullable_columns_of_a_conformed_table():
    df = table(
        [
            {"trial_id": "a", "status": "ok", "params": 10, "accuracy": 0.5},
            {"trial_id": "b", "status": "ok", "params": 20, "accuracy": 0.4},
            {"trial_id": "c", "status": "failed", "error": "boom"},
        ]
    )
    assert df["params"].dtype == "Int64"
    assert pareto_mask(df, SIZE_ACC).tolist() == [True, False, False]


def brute_force(values: np.ndarray) -> list[bool]:
    """O(n^2) non-domination for minimisation, NaN rows excluded."""
    out = []
    for i, a in enumerate(values):
        if np.isnan(a).any():
            out.append(False)
            continue
        dominated = any(
            not np.isnan(b).any() and (b <= a).all() and (b < a).any()
            for j, b in enumerate(values)
            if j != i
        )
        out.append(not dominated)
    return out


@settings(max_examples=100, deadline=None, database=None)
@given(
    k=st.integers(1, 3),
    rows=st.lists(
        st.tuples(*[st.sampled_from([0.0, 1.0, 2.0, 3.0, math.nan])] * 3),
        max_size=30,
    ),
    directions=st.tuples(*[st.sampled_from(["min", "max"])] * 3),
)
def test_pareto_mask_matches_brute_force(k, rows, directions):
    # Few distinct values: ties and duplicates are the rule, not the exception.
    cols = ["a", "b", "c"][:k]
    df = pd.DataFrame([r[:k] for r in rows], columns=cols, dtype="float64")
    objectives = dict(zip(cols, directions, strict=False))
    signs = np.array([1.0 if objectives[c] == "min" else -1.0 for c in cols])
    expected = brute_force(df.to_numpy().reshape(len(df), k) * signs)
    assert pareto_mask(df, objectives).tolist() == expected


def test_pareto_front_rows_sorted_by_first_min_objective():
    df = points((4, 0.9), (3, 0.6), (1, 0.5), (2, 0.7))
    front = pareto_front(df, {"accuracy": "max", "params": "min"})
    assert front["params"].tolist() == [1, 2, 4]
    assert front.index.tolist() == [2, 3, 0]  # the rows themselves, unchanged


def test_pareto_front_three_objectives():
    df = pd.DataFrame(
        {
            "params": [1, 2, 2, 3],
            "accuracy": [0.5, 0.7, 0.7, 0.8],
            "latency_b1_ms": [3.0, 1.0, 2.0, 5.0],
        }
    )
    objs = {"params": "min", "accuracy": "max", "latency_b1_ms": "min"}
    front = pareto_front(df, objs)
    assert front.index.tolist() == [0, 1, 3]  # row 2 loses to row 1 on latency


# ---------------------------------------------------------------- hypervolume
def test_hypervolume_hand_computed():
    # Minimising params, maximising accuracy, reference (4, 0.0): the front
    # (1, 0.5), (2, 0.8) covers [1, 2] x [0, 0.5] + [2, 4] x [0, 0.8] = 0.5 + 1.6.
    df = points((1, 0.5), (2, 0.8), (3, 0.7), (5, 0.95), (np.nan, 0.99))
    ref = {"params": 4, "accuracy": 0.0}
    assert hypervolume_2d(df, SIZE_ACC, ref) == pytest.approx(2.1)
    # Dominated points change nothing; one point gives its rectangle.
    assert hypervolume_2d(df.iloc[[0, 1]], SIZE_ACC, ref) == pytest.approx(2.1)
    assert hypervolume_2d(points((1, 0.5)), SIZE_ACC, ref) == pytest.approx(1.5)
    assert hypervolume_2d(points((5, 0.5)), SIZE_ACC, ref) == 0.0


def test_hypervolume_needs_two_objectives_and_a_matching_reference():
    df = points((1, 0.5))
    with pytest.raises(ValueError, match="2 objectives"):
        hypervolume_2d(df, {"params": "min"}, {"params": 2})
    with pytest.raises(ValueError, match="reference"):
        hypervolume_2d(df, SIZE_ACC, {"params": 2})


@settings(max_examples=50, deadline=None, database=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), max_size=12))
def test_hypervolume_counts_the_dominated_grid_cells(pairs):
    # On an integer grid the dominated area is the number of unit cells
    # [i, i+1] x [j, j+1] (reference (6, 6), both minimised) that some point
    # dominates, i.e. with a point at or below-left of the cell's corner.
    df = pd.DataFrame(pairs, columns=["a", "b"], dtype="float64")
    objs = {"a": "min", "b": "min"}
    cells = sum(any(a <= i and b <= j for a, b in pairs) for i in range(6) for j in range(6))
    assert hypervolume_2d(df, objs, {"a": 6, "b": 6}) == pytest.approx(cells)


# ---------------------------------------------------------------- aggregate
def trial(i, sr, seed, acc, status="ok", **extra) -> dict:
    row = dict(
        trial_id=f"sr-{i}-s{seed}",
        space="sr",
        point=i,
        seed=seed,
        status=status,
        error="" if status == "ok" else "boom",
        base="squeezenet1_1",
        squeeze_ratio=sr,
        pct3x3=0.5,
        base_e=128,
        incr_e=128,
        freq=2,
        bypass="none",
        dataset="fashion_mnist",
        params=int(1000 * (1 + 10 * sr)),
        accuracy=acc,
        wall_s=60.0,
    )
    row.update(extra)
    return row


def test_aggregate_seeds_mean_std_and_count_per_architecture():
    df = table(
        [
            trial(0, 0.125, 0, 0.80),
            trial(0, 0.125, 1, 0.90),
            trial(1, 0.5, 0, 0.70),
            trial(1, 0.5, 1, 0.72),
            trial(1, 0.5, 2, 0.74),
            trial(2, 1.0, 0, None, status="failed"),
        ]
    )
    agg = aggregate_seeds(df, metrics=["accuracy", "params"])
    assert len(agg) == 2  # the failed trial is not an architecture
    agg = agg.set_index("squeeze_ratio")
    assert agg.loc[0.125, "accuracy"] == pytest.approx(0.85)
    assert agg.loc[0.125, "accuracy_std"] == pytest.approx(math.sqrt(0.005))
    assert agg.loc[0.5, "accuracy"] == pytest.approx(0.72)
    assert agg.loc[0.5, "accuracy_std"] == pytest.approx(0.02)
    assert agg["n_seeds"].tolist() == [2, 3]
    assert agg.loc[0.5, "params_std"] == 0.0
    # Metaparameters are kept, with their values; the recipe (NA here) too.
    assert (agg["base_e"] == 128).all() and agg["recipe"].isna().all()
    assert set(agg["space"]) == {"sr"}


def test_aggregate_seeds_one_seed_has_nan_std():
    agg = aggregate_seeds(table([trial(0, 0.25, 0, 0.8)]))
    assert agg["n_seeds"].tolist() == [1]
    assert np.isnan(agg["accuracy_std"].iloc[0])


def test_varied_metaparameters():
    df = table([trial(0, 0.125, 0, 0.8), trial(1, 0.5, 0, 0.7, bypass="simple")])
    assert varied_metaparameters(df) == ["squeeze_ratio", "bypass"]


def test_preset_names():
    df = table(
        [
            trial(0, 0.125, 0, 0.8),  # base squeezenet1_1 with its defaults
            trial(1, 0.5, 0, 0.7),  # base squeezenet1_1, SR changed: not a preset
            trial(2, 0.5, 0, 0.7, trial_id="squeezenet1_0-0-s0"),
            trial(3, 0.125, 0, 0.7, base=None),
        ]
    )
    assert preset_names(df).tolist() == ["squeezenet1_1", pd.NA, "squeezenet1_0", pd.NA]


# ---------------------------------------------------------------- edf
def test_edf_hand_example():
    df = pd.DataFrame(
        {
            "bypass": ["none"] * 4 + ["simple", "simple"],
            "accuracy": [0.9, 0.8, 0.8, 0.7, 0.6, np.nan],
            "status": ["ok"] * 5 + ["failed"],
        }
    )
    out = edf(df, by="bypass")
    assert list(out.columns[:3]) == ["group", "error", "fraction"]
    none = out[out["group"] == "none"]
    assert none["error"].tolist() == pytest.approx([0.1, 0.2, 0.3])
    assert none["fraction"].tolist() == pytest.approx([0.25, 0.75, 1.0])
    simple = out[out["group"] == "simple"]
    assert simple["error"].tolist() == pytest.approx([0.4])
    assert simple["fraction"].tolist() == [1.0]
    assert out.groupby("group")["n"].first().to_dict() == {"none": 4, "simple": 1}
    for _, part in out.groupby("group"):
        assert part["fraction"].is_monotonic_increasing
        assert part["error"].is_monotonic_increasing
        assert part["fraction"].iloc[-1] == 1.0


def test_edf_without_groups():
    out = edf(points((1, 0.5), (2, 0.75)))
    assert out["group"].unique().tolist() == ["all"]
    assert out["fraction"].tolist() == [0.5, 1.0]


def test_complexity_normalised_edf_reweights_by_bins():
    # Group a: three small models and one large one; with two log-bins each bin
    # gets half of the group's weight: 1/6 to each small model, 1/2 to the large.
    df = pd.DataFrame(
        {
            "g": ["a"] * 4 + ["b"] * 2,
            "params": [1e3, 1e3, 2e3, 1e6, 1e3, 1e6],
            "accuracy": [0.9, 0.8, 0.7, 0.95, 0.6, 0.5],
        }
    )
    w = complexity_weights(df["params"], df["g"], bins=2)
    assert w.tolist() == pytest.approx([1 / 6, 1 / 6, 1 / 6, 1 / 2, 1 / 2, 1 / 2])
    out = edf(df, by="g", normalize_by="params", bins=2)
    a = out[out["group"] == "a"]
    assert a["error"].tolist() == pytest.approx([0.05, 0.1, 0.2, 0.3])
    assert a["fraction"].tolist() == pytest.approx([0.5, 4 / 6, 5 / 6, 1.0])
    assert out.attrs["normalize_by"] == "params"


def test_edf_unknown_column():
    with pytest.raises(ValueError, match="flops"):
        edf(points((1, 0.5)), normalize_by="flops")


# ---------------------------------------------------------------- sensitivity
def test_sensitivity_hand_example():
    df = pd.DataFrame(
        {
            "squeeze_ratio": [0.25, 0.25, 0.5, 0.5],
            "accuracy": [0.8, 0.9, 0.7, 0.1],
            "bytes_f32": [100, 100, 400, 400],
            "status": ["ok", "ok", "ok", "failed"],
        }
    )
    out = sensitivity(df, "squeeze_ratio")
    assert out["squeeze_ratio"].tolist() == [0.25, 0.5]
    assert out["n"].tolist() == [2, 1]
    assert out["accuracy_mean"].tolist() == pytest.approx([0.85, 0.7])
    assert out["accuracy_std"].iloc[0] == pytest.approx(math.sqrt(0.005))
    assert np.isnan(out["accuracy_std"].iloc[1])  # one row: no spread
    assert out["bytes_f32_mean"].tolist() == [100, 400]


# ---------------------------------------------------------------- plots
def sweep_table() -> pd.DataFrame:
    rows = []
    for i, sr in enumerate([0.125, 0.25, 0.5, 1.0]):
        for seed in range(2):
            acc = 0.8 + 0.05 * sr + 0.01 * seed
            rows.append(trial(i, sr, seed, acc, bytes_f32=4000 * (1 + 100 * sr)))
    return table(rows)


def has_drawing(ax) -> bool:
    return bool(ax.lines or ax.collections)


def test_pareto_plot():
    agg = aggregate_seeds(sweep_table())
    fig = plots.pareto(agg, x="params", y="accuracy")
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert plots.title(fig) == "test top-1 accuracy (%) vs parameters: Pareto front"
    assert ax.get_xlabel() == "parameters" and ax.get_ylabel() == plots.LABELS["accuracy"]
    assert has_drawing(ax)
    assert ax.get_xscale() == "linear"  # 2,250 to 11,000 params: under a decade
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "Pareto front" in labels and "squeezenet1_1" in labels
    assert any("SR=0.125" in t.get_text() for t in ax.texts)  # annotated


def test_pareto_plot_linear_within_a_decade():
    fig = plots.pareto(points((1000, 0.5), (2000, 0.7), (5000, 0.6)))
    assert fig.axes[0].get_xscale() == "linear"
    fig = plots.pareto(points((1000, 0.5), (20000, 0.7)))
    assert fig.axes[0].get_xscale() == "log"


def test_edf_plot():
    fig = plots.edf(edf(aggregate_seeds(sweep_table()), by="squeeze_ratio"))
    (ax,) = fig.axes
    assert plots.title(fig) == "error EDF by squeeze ratio (SR)"
    assert len(ax.lines) == 4  # one curve per level
    assert ax.get_xlabel() == plots.LABELS["error"]


def test_sensitivity_plot():
    sens = sensitivity(sweep_table(), "squeeze_ratio")
    fig = plots.sensitivity(sens, "squeeze_ratio")
    assert fig.get_suptitle().startswith("sensitivity to squeeze ratio (SR)")
    assert [ax.get_title() for ax in fig.axes] == [
        plots.LABELS["accuracy"],
        plots.LABELS["bytes_f32"],
    ]
    assert all(has_drawing(ax) for ax in fig.axes)


def test_human_units():
    assert plots.human_bytes(4_800_000) == "4.8 MB"
    assert plots.human_bytes(512) == "512 B"
    assert plots.human_count(1_250_000) == "1.25M"


def _dominated_volume(points: np.ndarray, ref: np.ndarray) -> float:
    """Brute force: the cells of the grid the points' coordinates cut the box into,
    each counted when some point is no worse than its lower corner (minimised)."""
    axes = [np.unique(np.append(points[:, k], ref[k])) for k in range(points.shape[1])]
    volume = 0.0
    for cell in itertools.product(*(range(len(a) - 1) for a in axes)):
        lo = np.array([axes[k][i] for k, i in enumerate(cell)])
        hi = np.array([axes[k][i + 1] for k, i in enumerate(cell)])
        if (points <= lo).all(axis=1).any():
            volume += float(np.prod(hi - lo))
    return volume


@pytest.mark.parametrize("seed", range(5))
def test_hypervolume_in_three_objectives_is_the_brute_force_volume(seed):
    rng = np.random.default_rng(seed)
    n = 8
    df = pd.DataFrame(
        {
            "accuracy": rng.uniform(0.5, 0.95, n).round(3),
            "bytes_int8": rng.integers(10_000, 200_000, n),
            "latency_b1_ms": rng.uniform(0.1, 2.0, n).round(2),
        }
    )
    objectives = {"accuracy": "max", "bytes_int8": "min", "latency_b1_ms": "min"}
    reference = {"accuracy": 0.5, "bytes_int8": 220_000, "latency_b1_ms": 2.2}
    points = np.column_stack([-df["accuracy"], df["bytes_int8"], df["latency_b1_ms"]])
    ref = np.array([-0.5, 220_000, 2.2])
    want = _dominated_volume(points, ref)
    assert want > 0
    assert hypervolume(df, objectives, reference) == pytest.approx(want, rel=1e-12)
    # the front alone spans the same volume; a dominated row adds nothing
    front = df[pareto_mask(df, objectives)]
    assert hypervolume(front, objectives, reference) == pytest.approx(want, rel=1e-12)


def test_trial_epochs_count_what_a_scheduler_saved_and_nothing_else():
    from explorer.analysis.pareto import trial_epochs

    rows = pd.DataFrame(
        {
            "status": ["ok", "stopped", "failed", "skipped"],
            "epochs": [9, 9, 9, 9],
            "epochs_done": [9, 3, 2, 0],
        }
    )
    # the stopped trial saved 6 epochs; the failed one lost 7 (not saved); skipped: none asked
    assert trial_epochs(rows) == (14, 9 + 9 + 2)


def test_busy_seconds_is_the_union_of_training_intervals():
    from explorer.analysis import busy_seconds, trial_seconds

    end = pd.Timestamp("2026-01-01 00:00:00", tz="UTC")
    rows = pd.DataFrame(
        {  # two overlapping programs, then a day's gap (a resumed sweep), then one more
            "wall_s": [100.0, 100.0, 30.0, np.nan],
            "finished_at": [end, end + pd.Timedelta(seconds=50), end + pd.Timedelta(days=1), end],
            "seeds_in_program": [2, 1, 1, 1],
        }
    )
    assert busy_seconds(rows) == 150.0 + 30.0  # [-100, 0] u [-50, 50], then [.., +30]
    assert trial_seconds(rows).tolist()[:3] == [50.0, 100.0, 30.0]
    assert math.isnan(busy_seconds(rows.iloc[:0]))  # unknown, not zero
    assert math.isnan(busy_seconds(rows.drop(columns="finished_at")))
