"""Sweeps on Ray Tune: a real 2-node loopback cluster, resume after kill -9, faults."""

import json
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from explorer import cli, results, rows, sweep_folder
from explorer import space as spaces

from .conftest import CRASHED_TRIAL

pytestmark = pytest.mark.slow


def explorer(*args, env=None, **kw):
    """The CLI in a child process, as a user would run it."""
    return subprocess.Popen(
        [sys.executable, "-m", "explorer.cli", *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kw,
    )


def cluster_args(c):
    return ["--address", c["address"], "--node-ip-address", c["node_ip"]]


def test_sweep_on_a_two_node_cluster(ray_cluster, tiny_space, tmp_path):
    # with the Pareto-aware scheduler in the loop: three epochs, a rung at the first
    space = tiny_space(
        "cluster",
        epochs=3,
        search="{method: grid, seeds: 2, vmap_seeds: true, scheduler: pareto}",
    )
    out = tmp_path / "sweep"
    proc = explorer(
        "sweep", space, "--output", out, *cluster_args(ray_cluster), env=ray_cluster["env"]
    )
    text, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, text
    table = pd.read_parquet(out / "results.parquet")  # one pandas call
    assert list(table.columns) == results.COLUMNS
    assert sorted(table["trial_id"]) == [f"cluster-p{p:04d}-s{s}" for p in (0, 1) for s in (0, 1)]
    # the smaller network is never stopped for accuracy; the larger trains to the end
    # or stops at the rung, dominated by the smaller one once it has finished
    assert set(table["status"]) <= {"ok", "stopped"}, table[["trial_id", "error"]]
    small = table[table["trial_id"].str.startswith("cluster-p0000")]
    assert (small["status"] == "ok").all() and (small["epochs_done"] == 3).all()
    assert (table.loc[table["status"] == "ok", "epochs_done"] == 3).all()
    stopped = table[table["status"] == "stopped"]
    assert (stopped["epochs_done"] == 1).all()  # at the rung
    assert stopped["error"].str.contains("dominated by networks").all()  # the scheduler's why
    done = int(table["epochs_done"].sum())
    assert f"trial-epochs: {done:,} of 12 " in text  # what the scheduler saved, if anything
    assert table["accuracy"].between(0, 1).all() and table["params"].is_monotonic_increasing
    assert (table["seeds_in_program"] == 2).all()  # each point's seeds in one program
    nodes = {h.split("(")[-1].rstrip(")") for h in table["host"]}
    assert nodes == ray_cluster["nodes"], "trials ran on both nodes, on loopback"
    assert "best by accuracy" in text and "cluster-p000" in text


def test_ehvi_sweep_on_the_cluster_trains_its_budget_and_resumes(ray_cluster, tiny_space, tmp_path):
    # a space of 1,728 points, a budget of 2, two seeds a point, the scheduler in the loop
    extra = (
        "  squeeze_ratio: {values: [0.125, 0.25, 0.5, 0.75]}\n"
        "  pct3x3: {values: [0.25, 0.5, 0.75]}\n"
        "  bypass: {values: [none, simple, complex]}\n"
        "  pool_after: {values: [[conv1, fire2, fire4], [conv1, fire3, fire5], "
        "[conv1, fire4, fire6]]}\n"
        "  learning_rate: {values: [0.003, 0.002]}\n"
        "  dropout: {values: [0.0, 0.5]}\n"
        "constraints: {max_params: 12000}"
    )
    search = "{method: ehvi, num_samples: 2, seeds: 2, scheduler: pareto, onnx_latency: false}"
    space = tiny_space("ehvi", base_e="{values: [8, 12, 16, 20]}", extra=extra, epochs=2,
                       search=search)  # fmt: skip
    s = spaces.load(space)
    assert len(spaces.candidates(s)) == 1728
    out = tmp_path / "sweep"
    argv = ["sweep", space, "--output", out, *cluster_args(ray_cluster), "--report"]
    proc = explorer(*argv, env=ray_cluster["env"])
    text, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, text
    table = pd.read_parquet(out / "results.parquet")
    assert len(table) == 4 and table["point"].nunique() == 2  # a row for every trial
    assert set(table["status"]) <= {"ok", "stopped"}, table[["trial_id", "error"]]
    assert (table["params"] <= 12000).all()  # the constraint holds for every proposal
    pts = {p.index: p for p in spaces.candidates(s)}
    for _, r in table.iterrows():  # each row is the grid point its id names
        assert r["trial_id"] == rows.trial_id("ehvi", r["point"], r["seed"])
        assert r["squeeze_ratio"] == pts[r["point"]].values["squeeze_ratio"]
    report = (out / "report" / "report.md").read_text()
    allowed = sum(not rows.constraint_violations(s, p) for p in pts.values())
    assert f"trained 2 of the {allowed:,} candidate points" in report
    assert (out / "report" / "explored.png").is_file()
    # resumed with nothing left: the searcher, fed the rows, trains nothing again
    proc = explorer(*argv, "--resume", env=ray_cluster["env"])
    text, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, text
    assert "4 already done" in text
    assert (
        pd.read_parquet(out / "results.parquet")["trial_id"].tolist() == table["trial_id"].tolist()
    )


def test_kill_9_then_resume_loses_and_retrains_nothing(ray_cluster, tiny_space, tmp_path):
    # four seeds of one network, one trial each: the same compiled programs four times
    space = tiny_space(
        "resumable", base_e=8, epochs=3, search="{method: grid, seeds: 4, vmap_seeds: false}"
    )
    space.write_text(space.read_text().replace("train_size: 512", "train_size: 2048"))
    out = tmp_path / "sweep"
    rows = out / "rows"
    proc = explorer(
        "sweep",
        space,
        "--output",
        out,
        "--max-concurrent",
        1,
        *cluster_args(ray_cluster),
        env=ray_cluster["env"],
    )

    def running_with_a_checkpoint() -> set[str]:
        done = {f.stem for f in rows.glob("*.parquet")}
        try:
            noted = set(json.loads((out / "checkpoints.json").read_text()))
        except (OSError, ValueError):
            return set()
        return noted - done if done else set()

    deadline = time.time() + 300
    while time.time() < deadline and not running_with_a_checkpoint():
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # the driver dies with a trial between epochs
    proc.wait()
    (cut,) = running_with_a_checkpoint()
    before = {f.name: (f.stat().st_mtime_ns, f.read_bytes()) for f in rows.glob("*.parquet")}
    assert 1 <= len(before) < 4, "killed mid-sweep"

    again = explorer(
        "sweep",
        space,
        "--output",
        out,
        "--resume",
        *cluster_args(ray_cluster),
        env=ray_cluster["env"],
    )
    text, _ = again.communicate(timeout=600)
    assert again.returncode == 0, text
    assert f"{len(before)} already done" in text
    table = results.load(out).set_index("trial_id")
    assert sorted(table.index) == [f"resumable-p0000-s{s}" for s in range(4)]
    assert (table["status"] == "ok").all()
    # the trial the driver left running went on from its last checkpoint
    assert table.loc[cut, "resumed_from_epoch"] >= 1, table["resumed_from_epoch"]
    assert (table.drop(index=cut)["resumed_from_epoch"] == 0).all()
    for name, (mtime, data) in before.items():  # finished rows untouched: not retrained
        f = rows / name
        assert f.stat().st_mtime_ns == mtime and f.read_bytes() == data
    # every learning curve whole, the resumed trial's too: epochs of both attempts
    curves = results.load_curves(out)
    for tid, c in curves.groupby("trial_id"):
        assert sorted(c["epoch"]) == [1, 2, 3], (tid, sorted(c["epoch"]))
    assert set(curves["trial_id"]) == set(table.index)


def test_failing_trials_become_rows_and_a_killed_worker_resumes(ray_cluster, tiny_space, tmp_path):
    # Real faults: a batch larger than the 512 training images fails its trial at
    # the start; and the test cluster's hook kills the worker of CRASHED_TRIAL, the
    # twin of point 0 (the evaluation batch alone differs), after its first epoch.
    space = tiny_space(
        "faulty",
        base_e=8,
        epochs=2,
        extra="  batch_size: {values: [64, 1024]}\n  eval_batch_size: {values: [256, 128]}",
        search="{method: grid, seeds: 1, max_failures: 1, onnx_latency: true}",
    )
    out = tmp_path / "sweep"
    proc = explorer(
        "sweep", space, "--output", out, *cluster_args(ray_cluster), env=ray_cluster["env"]
    )
    text, _ = proc.communicate(timeout=600)
    assert proc.returncode == 1, text  # finished, with failed rows: exit status 1
    t = results.load(out).set_index("trial_id")
    assert len(t) == 4
    assert t.loc["faulty-p0000-s0", "status"] == "ok"
    for tid in ("faulty-p0002-s0", "faulty-p0003-s0"):
        assert t.loc[tid, "status"] == "failed" and t.loc[tid, "attempts"] == 1
        assert "batch_size 1024 is larger than the 512 training images" in t.loc[tid, "error"]
    assert "failed: faulty-p0002-s0" in text and "--retry-failed" in text
    # The worker died after epoch 1 and its checkpoint; Ray retried the trial,
    # which resumed there and lost no epoch: it ends where the uninterrupted run
    # of the same network and seed ends.
    crashed, clean = t.loc[CRASHED_TRIAL], t.loc["faulty-p0000-s0"]
    assert crashed["status"] == "ok", crashed["error"]
    assert crashed["attempts"] == 2 and clean["attempts"] == 1
    assert crashed["resumed_from_epoch"] == 1 and clean["resumed_from_epoch"] == 0
    assert crashed["epochs_done"] == 2 and crashed["latency_ort_b1_ms"] > 0
    assert crashed["test_loss"] == pytest.approx(clean["test_loss"], rel=1e-5)
    assert crashed["accuracy"] == pytest.approx(clean["accuracy"], abs=1e-9)
    # each row points to its final weights
    from explorer import checkpoints

    params, _, meta = checkpoints.restore(out / crashed["checkpoint"])
    assert meta["epoch"] == 2 and meta["seed"] == 0
    curves = results.load_curves(out).set_index(["trial_id", "epoch"])
    assert curves.loc[(CRASHED_TRIAL, 2), "accuracy"] == crashed["accuracy"]


def test_local_tpe_sweep_with_constraints_and_bad_resume(tiny_space, tmp_path, capsys):
    space = tiny_space(
        "tpe",
        base_e="{int: [8, 64]}",
        extra="  squeeze_ratio: {uniform: [0.1, 0.5]}",
        search="{method: tpe, num_samples: 4, seeds: 1, keep_weights: front}",
    )
    text = space.read_text() + "constraints: {max_params: 40000}\n"
    space.write_text(text)
    out = tmp_path / "sweep"
    assert cli.main(["sweep", str(space), "--output", str(out)]) == 0
    table = results.load(out)
    assert len(table) == 4 and table["trial_id"].is_unique
    assert set(table["status"]) <= {"ok", "skipped"}
    skipped = table[table["status"] == "skipped"]
    assert (skipped["params"] > 40000).all() and (table[table.status == "ok"].params <= 40000).all()
    assert skipped["error"].str.startswith("constraint: params").all()
    # a learning curve per trained row: one epoch each, its metrics those of the row
    curves = results.load_curves(out / "curves.parquet").set_index("trial_id")
    ok = table[table["status"] == "ok"].set_index("trial_id")
    assert sorted(curves.index) == sorted(ok.index) and (curves["epoch"] == 1).all()
    assert (curves.loc[ok.index, "accuracy"] == ok["accuracy"]).all()
    # keep_weights: front: only the front's rows keep their weights
    from explorer.analysis.pareto import pareto_mask

    front = pareto_mask(ok, {"accuracy": "max", "params": "min"})
    assert ok["checkpoint"].fillna("").ne("").tolist() == list(front)
    assert all((out / c).is_dir() for c in ok["checkpoint"][front])
    # the best of them out to ONNX, checked by ONNX Runtime on the same test images
    capsys.readouterr()
    onnx = tmp_path / "best.onnx"
    argv = ["export", str(out), "--best", "accuracy", "--where", "params <= 40000"]
    assert cli.main([*argv, "--out", str(onnx)]) == 0
    best = ok["accuracy"].max()
    assert f"; JAX: {100 * best:.2f}%" in capsys.readouterr().out
    assert cli.main(["evaluate", str(onnx), "--test-size", "256"]) == 0
    printed = float(capsys.readouterr().out.split("top-1 ")[1].split("%")[0]) / 100
    assert abs(printed - best) <= 0.002
    assert cli.main(["export", str(out), "--trial", "tpe-p9999-s0"]) == 2
    assert "no trial 'tpe-p9999-s0'" in capsys.readouterr().err
    (unkept, *_) = table[table["checkpoint"].fillna("") == ""]["trial_id"]  # off front, skipped
    assert cli.main(["export", str(out), "--trial", unkept]) == 2
    assert f"trial {unkept} kept no weights" in capsys.readouterr().err
    # what a resumed TPE sweep warm-starts Optuna with: each finished point's values
    # and objectives
    prior = sweep_folder.prior_results(spaces.load(space), out)
    assert len(prior) == len(ok)
    for values, (acc, params) in prior:
        hit = ok[
            (ok["base_e"] == values["base_e"]) & (ok["squeeze_ratio"] == values["squeeze_ratio"])
        ]
        assert len(hit) == 1 and hit["accuracy"].iloc[0] == acc and hit["params"].iloc[0] == params
    assert cli.main(["sweep", str(space), "--output", str(out)]) == 2  # no --resume
    assert "--resume" in capsys.readouterr().err
    space.write_text(text.replace("40000", "50000"))
    assert cli.main(["sweep", str(space), "--output", str(out), "--resume"]) == 2
    assert "differs from the space this sweep started with" in capsys.readouterr().err


def test_skipped_rows_are_never_trained(tiny_space):
    from explorer import space as spaces

    s = spaces.load(tiny_space("limits", base_e="{values: [8, 64]}"))
    s = s.__class__(
        **{**s.__dict__, "constraints": s.constraints.model_copy(update={"max_params": 20000})}
    )
    keep, skipped = rows.skipped_rows(s, spaces.points(s))
    assert [p.index for p in keep] == [0]
    assert [r["trial_id"] for r in skipped] == ["limits-p0001-s0", "limits-p0001-s1"]
    assert all(r["status"] == "skipped" and "max_params 20,000" in r["error"] for r in skipped)


def test_local_random_search_with_asha_records_stopped_rows(tiny_space, tmp_path):
    space = tiny_space(
        "randasha",
        base_e="{values: [8, 16, 24, 32]}",
        extra="  learning_rate: {loguniform: [0.00001, 0.003]}",
        epochs=4,
        search="{method: random, num_samples: 6, seed: 3, seeds: 1, scheduler: asha, "
        "onnx_latency: false}",
    )
    out, storage = tmp_path / "sweep", tmp_path / "elsewhere"
    argv = ["sweep", str(space), "--output", str(out), "--max-concurrent", "2"]
    assert cli.main([*argv, "--storage", str(storage)]) == 0
    table = results.load(out)
    # the trials and their checkpoints went to --storage; the rows name them there
    assert not (out / "tune").exists() and (storage / "tune").is_dir()
    ok = table[table["status"] == "ok"]
    assert ok["checkpoint"].str.startswith(str(storage)).all() and len(ok)
    drawn = spaces.points(spaces.load(space))  # the same seeded sample the driver trained
    assert sorted(table["point"]) == [p.index for p in drawn]
    for p in drawn:
        row = table[table["point"] == p.index].iloc[0]
        assert row["base_e"] == p.arch.base_e and row["learning_rate"] == p.recipe.learning_rate
    assert set(table["status"]) <= {"ok", "stopped"} and (table["status"] == "stopped").any()
    stopped = table[table["status"] == "stopped"]
    assert (stopped["epochs_done"] < 4).all() and stopped["accuracy"].notna().all()
    assert (table[table["status"] == "ok"]["epochs_done"] == 4).all()
