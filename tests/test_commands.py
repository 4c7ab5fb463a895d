"""The command layer, called directly: what a command selects (selection), prints
(console), schedules with (search), writes (sweep_rows, trial's Keeper) and
does with parsed arguments (commands), on small real inputs."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ray.tune.experiment import Trial

from explorer import architecture as arch
from explorer import (
    cli,
    commands,
    complexity,
    console,
    results,
    rows,
    search,
    selection,
)
from explorer import space as spaces
from explorer.sweep_rows import RowWriter
from explorer.trial import Keeper, worst

ROOT = Path(__file__).resolve().parent.parent
LIVE = ROOT / "experiments" / "time_to_front" / "live"  # a committed sweep: rows, curves


# ---------------------------------------------------------------- selection
def test_set_values_are_yaml_checked_like_a_space_file():
    got = selection.parse_sets(["squeeze_ratio=0.25", "bypass=simple", "learning_rate=1e-3"])
    assert got == {"squeeze_ratio": 0.25, "bypass": "simple", "learning_rate": 0.001}


@pytest.mark.parametrize(
    "pair, expected",
    [
        ("squeeze_ratio", "expected key=value"),
        ("image_size=32", "set by the data set"),
        ("squeez_ratio=0.5", "unknown metaparameter"),
        ("bypass=sideways", "bypass"),
    ],
)
def test_bad_set_values_name_the_key(pair, expected):
    with pytest.raises((selection.UsageError, spaces.SpaceError), match=expected):
        selection.parse_sets([pair])


def test_a_preset_takes_its_input_from_the_data_set_and_sets_from_the_command_line():
    sel = selection.select(None, "squeezenet1_0", dataset="fashion_mnist",
                           sets=["squeeze_ratio=0.25", "epochs=3"])  # fmt: skip
    assert sel.space is None and len(sel.points) == 1
    spec = sel.points[0].arch
    assert (spec.image_size, spec.in_channels, spec.num_classes) == (28, 1, 10)
    assert spec.squeeze_ratio == 0.25 and sel.points[0].recipe.epochs == 3
    assert spec.replace(squeeze_ratio=arch.preset("squeezenet1_0").squeeze_ratio) == arch.preset(
        "squeezenet1_0", num_classes=10, image_size=28, in_channels=1
    )


def test_a_space_selection_applies_sets_to_every_point_and_picks_one():
    path = str(ROOT / "spaces" / "quickstart.yaml")
    every = selection.select(path, sets=["pct3x3=0.25"])
    assert len(every.points) > 1 and {p.arch.pct3x3 for p in every.points} == {0.25}
    one = selection.select(path, point=1)
    assert [p.index for p in one.points] == [1]
    with pytest.raises(selection.UsageError, match=r"--point 99: the space has points 0\.\."):
        selection.select(path, point=99)


# ---------------------------------------------------------------- console
def test_console_formats_sizes_means_and_tables():
    assert [console.human_bytes(n) for n in (999, 1234, 1_234_567, 2.5e9)] == [
        "999 B", "1.23 KB", "1.23 MB", "2.5 GB",
    ]  # fmt: skip
    assert console.mean([0.5, math.nan, 0.7]) == pytest.approx(0.6)
    assert math.isnan(console.mean([math.nan]))
    assert console.pct([0.9, 0.8]) == "85.00%"
    assert console.first_line(ValueError("one\ntwo")) == "one"
    assert console.first_line(KeyError()) == "KeyError"
    table = console.format_table([{"a": 1, "long name": "x"}, {"a": 100, "long name": "yy"}])
    lines = table.splitlines()
    assert lines[0] == "  a  long name" and lines[3] == "100         yy"
    assert len({len(line) for line in lines}) == 1
    assert console.format_table([]) == "(no rows)"
    assert json.dumps({"x": np.float32(0.5), "n": np.int64(3)}, default=console.json_default)


def test_best_rows_are_the_ok_rows_in_the_first_objectives_order():
    table = results.load(LIVE)
    best = console.best_rows(table, {"accuracy": "max", "bytes_int8": "min"}, n=3)
    ok = table[table["status"] == "ok"].sort_values("accuracy", ascending=False)
    assert [b["trial"] for b in best] == list(ok["trial_id"][:3])
    assert best[0]["top-1"] == f"{100 * ok['accuracy'].iloc[0]:.2f}%"
    smallest = console.best_rows(table, {"bytes_int8": "min"}, n=1)[0]
    chosen = ok.set_index("trial_id").loc[smallest["trial"], "bytes_int8"]
    assert chosen == ok["bytes_int8"].min()


# ---------------------------------------------------------------- search
def test_the_scheduler_registry_builds_each_scheduler():
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    objectives = {"accuracy": "max", "params": "min"}
    assert search.scheduler("none", objectives, epochs=4) is None
    assert isinstance(search.scheduler("asha", objectives, epochs=4), ASHAScheduler)
    pareto = search.scheduler("pareto", objectives, epochs=9)
    assert isinstance(pareto, TrialScheduler) and pareto.rungs.rungs == [1, 3]
    assert set(search.METHODS) == {"grid", "random", "tpe", "ehvi"}
    assert not search.METHODS["grid"].sampled and search.METHODS["ehvi"].enumerated


# ---------------------------------------------------------------- sweep_rows
def _trial(space, point, seeds, last_result=None):
    trial = Trial("explorer", config={"index": point.index, "values": point.values,
                                      "seeds": seeds}, stub=True)  # fmt: skip
    if last_result is not None:
        trial.run_metadata.last_result = last_result
    return trial


def test_the_row_writer_writes_a_finished_trials_rows_with_the_schedulers_reason(
    tiny_space, tmp_path
):
    space = spaces.load(tiny_space("rw"))  # rw-p0000 and rw-p0001: base_e 8 and 16
    point = spaces.points(space)[1]
    base = [rows.base_row(space, point, s, arch.plan(point.arch)) for s in (0, 1)]
    epoch = {"epoch": 1, **{m: [0.6, 0.7] for m in rows.EPOCH_METRICS}}
    result = {"epoch": 1, "rows": rows.stopped(base, epoch, "here")}
    trial = _trial(space, point, [0, 1], result)
    said = "paused, then stopped: dominated by networks that finished"
    scheduler = search.scheduler("pareto", {"accuracy": "max", "params": "min"}, epochs=3)
    scheduler.why[trial.trial_id] = said  # as the scheduler says it
    writer = RowWriter(tmp_path, space, total=4, done_before=0, reasons=scheduler.why)
    writer.on_trial_start(0, [trial], trial)
    writer.on_trial_complete(0, [trial], trial)
    table = results.load(tmp_path)
    assert list(table["trial_id"]) == ["rw-p0001-s0", "rw-p0001-s1"]
    assert (table["status"] == "stopped").all() and (table["error"] == said).all()
    assert list(table["accuracy"]) == pytest.approx([0.6, 0.7]) and (table["attempts"] == 1).all()
    assert list(table.columns) == results.COLUMNS


def test_a_trial_that_errors_before_reporting_becomes_failed_rows(tiny_space, tmp_path):
    space = spaces.load(tiny_space("rw"))  # rw-p0000 and rw-p0001: base_e 8 and 16
    point = spaces.points(space)[0]
    writer = RowWriter(tmp_path, space, total=4, done_before=0)
    trial = _trial(space, point, [1])
    writer.on_trial_start(0, [trial], trial)
    writer.on_trial_error(0, [trial], trial)
    table = results.load(tmp_path)
    assert list(table["trial_id"]) == ["rw-p0000-s1"] and table["status"].iloc[0] == "failed"
    assert table["error"].iloc[0] == "trial errored (no error text)"
    assert writer.failed == 1 and not writer.write_error


# ---------------------------------------------------------------- trial
def test_the_keeper_saves_on_its_epochs_and_restores_every_seed(tiny_space, tmp_path):
    import jax

    from explorer import data as datasets
    from explorer import models
    from explorer.train import optimizer

    space = spaces.load(tiny_space("rw"))  # rw-p0000 and rw-p0001: base_e 8 and 16
    space = space.__class__(**{**space.__dict__, "search": space.search.model_copy(
        update={"checkpoint_every": 2})})  # fmt: skip
    point = spaces.points(space)[0]
    point = spaces.Point(point.index, point.arch, point.recipe.model_copy(update={"epochs": 3}),
                         point.values)  # fmt: skip
    data = datasets.load("fashion_mnist", None, 64, 64)
    shapes = models.param_shapes(models.build(arch.plan(point.arch)))  # traced, not compiled
    rng = np.random.default_rng(0)
    params = [jax.tree.map(lambda s: rng.standard_normal(s.shape, np.float32), shapes)
              for _ in (0, 1)]  # fmt: skip
    opt = optimizer(point.recipe, 1)
    states = lambda: [{"params": p, "opt": opt.init(p)} for p in params]  # noqa: E731
    keeper = Keeper(space, point, [0, 1], data)
    keeper.save(1, states)
    assert keeper.take() is None  # epoch 1 is not one to keep
    for epoch in (2, 3):  # every 2nd, and the last
        keeper.save(epoch, states)
        checkpoint = keeper.take()
        assert checkpoint is not None
        epochs, restored = keeper.restore(checkpoint)
        assert epochs == epoch and len(restored) == 2
        for p, r in zip(params, restored, strict=True):
            same = jax.tree.map(np.array_equal, p, r["params"])
            assert all(jax.tree.leaves(same))
    folder = Path(checkpoint.path)
    keeper.close()
    assert not folder.exists()  # the files Tune copied are not left behind
    assert keeper.resume({"resume": [str(tmp_path / "gone"), str(tmp_path / "gone")]}) is None
    assert worst()["accuracy"] == 0.0 and worst()["params"] > 1e17


# ---------------------------------------------------------------- commands
def test_inspect_prints_a_spaces_points_as_json(capsys):
    path = ROOT / "spaces" / "quickstart.yaml"
    args = cli.parser().parse_args(["inspect", str(path), "--json", "--set", "pct3x3=0.25"])
    assert commands.cmd_inspect(args) == 0
    doc = json.loads(capsys.readouterr().out)
    s = spaces.load(path)
    assert doc["num_points"] == len(spaces.points(s)) == len(doc["points"])
    assert doc["seeds"] == s.search.seeds and doc["method"] == s.search.method
    assert {p["metaparameters"]["pct3x3"] for p in doc["points"]} == {0.25}
    first = spaces.make_point(s, 0, {**spaces.points(s)[0].values, "pct3x3": 0.25})
    assert doc["points"][0]["params"] == complexity.params(arch.plan(first.arch))


def test_report_on_a_committed_sweep_draws_what_was_trained_and_what_was_not(tmp_path, capsys):
    args = cli.parser().parse_args(["report", str(LIVE), "--out", str(tmp_path / "r")])
    assert commands.cmd_report(args) == 0
    text = (tmp_path / "r" / "report.md").read_text()
    assert "trained 130 of the 1,296 candidate points (10.0%)" in text
    assert (tmp_path / "r" / "explored.png").stat().st_size > 10_000
    bad = cli.parser().parse_args(["report", str(LIVE), "--objective", "accuracy:up"])
    with pytest.raises(selection.UsageError, match="--objective accuracy:up: expected COLUMN"):
        commands.cmd_report(bad)
    assert pd.read_parquet(LIVE / "results.parquet").shape[0] == 130  # nothing written there
