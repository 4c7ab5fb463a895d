"""The trainer on real Fashion-MNIST slices, with a narrow SqueezeNet so it is quick."""

import json

import jax
import numpy as np
import pytest

from explorer import architecture as arch
from explorer import cli, complexity, devices, execution, measure, models, rows, settings, train
from explorer import data as datasets
from explorer.recipe import Recipe
from explorer.settings import SettingError, Settings

# SqueezeNet 1.1's layout at an eighth of its widths: same depth, pools and head.
SMALL = arch.preset("squeezenet1_1", num_classes=10, image_size=28, in_channels=1).replace(
    conv1_filters=16, base_e=16, incr_e=16
)
QUICK = Recipe(
    epochs=3,
    batch_size=64,
    optimizer="adam",
    learning_rate=3e-3,
    weight_decay=0.0,
    warmup_epochs=0.0,
    schedule="constant",
)


def records(spec, recipe, data, seeds, settings=None, costs=False) -> list[dict]:
    """The rows of a whole run (rows.trained), with its measured costs if asked."""
    run = train.train_and_evaluate(arch.plan(spec), recipe, data, seeds, settings)
    return rows.trained(run, data, train.measure_costs(run) if costs else None)


@pytest.fixture(scope="module")
def fmnist():
    return datasets.load("fashion_mnist", train_size=4096, test_size=512)


def test_training_learns_real_data(fmnist):
    [rec] = records(SMALL, QUICK, fmnist, [0])
    assert rec["status"] == "ok" and rec["epochs_done"] == 3
    assert rec["accuracy"] > 0.55, rec  # chance is 0.10
    assert rec["train_loss"] < 1.4  # from ln(10) = 2.30
    assert rec["top5"] >= rec["accuracy"]
    assert rec["train_examples"] == 4096 and rec["test_examples"] == 512
    assert rec["params"] == complexity.summary(arch.plan(SMALL))["params"]


def test_same_seed_same_result_other_seed_differs(fmnist):
    recipe = QUICK.model_copy(update={"epochs": 1})
    a, b, c = (records(SMALL, recipe, fmnist, [s])[0] for s in (1, 1, 2))
    assert a["test_loss"] == b["test_loss"] and a["accuracy"] == b["accuracy"]
    assert a["test_loss"] != c["test_loss"]


def _params_after(
    seeds, steps, data, recipe, spec=SMALL, devices=None, evaluate=False, settings=None
):
    model = models.build(arch.plan(spec), settings=settings, many_seeds=len(seeds) > 1)
    runner = train.make_runner(model, recipe, data, len(seeds), devices, settings)
    init_key, loop_key = execution.split_keys(execution.seed_keys(seeds), 2)
    state, dev = runner.init(init_key), execution.device_data(data, runner)
    key = execution.fold_keys(loop_key, 1)
    state = execution.run_steps(runner, state, dev, runner.shuffle(key), key, 0, steps)
    params = jax.tree.map(np.asarray, state["params"])
    return (params, execution.evaluate(runner, state["params"], dev)) if evaluate else params


def test_batch_split_over_two_devices_is_the_one_device_step(fmnist):
    """Half a batch per device, gradients averaged: the same parameters and test sums."""
    assert len(jax.devices()) == 2  # conftest asks for two CPU devices
    spec = SMALL.replace(dropout=0.0)  # each device's share draws its own dropout mask
    one, ev1 = _params_after([4], 3, fmnist, QUICK, spec, devices=1, evaluate=True)
    two, ev2 = _params_after([4], 3, fmnist, QUICK, spec, devices=2, evaluate=True)
    start = _params_after([4], 0, fmnist, QUICK, spec, devices=1)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), one, two)
    assert not np.allclose(start["conv1"]["kernel"], two["conv1"]["kernel"])  # it trained
    np.testing.assert_allclose(np.concatenate(ev1), np.concatenate(ev2), rtol=1e-4)
    with pytest.raises(ValueError, match=r"devices: 2 does not divide the batch sizes \(63,"):
        train.make_runner(
            models.build(arch.plan(spec)),
            QUICK.model_copy(update={"batch_size": 63}),
            fmnist,
            devices=2,
        )
    with pytest.raises(ValueError, match="devices: expected 1 to 2, got 3"):
        train.make_runner(models.build(arch.plan(spec)), QUICK, fmnist, devices=3)


def test_two_device_calls_wait_before_the_cpu_client_queue_fills(fmnist):
    # XLA's CPU client blocks one of its few threads once 32 programs per device
    # are queued; with an all-reduce pending that deadlocked (execution.placing).
    # Every IN_FLIGHT-th call of a multi-device program returns a finished result.
    recipe = QUICK.model_copy(update={"batch_size": 256})
    runner = train.make_runner(models.build(arch.plan(SMALL)), recipe, fmnist, devices=2)
    state, dev = runner.init(jax.random.key(0)), execution.device_data(fmnist, runner)
    perm = runner.shuffle(jax.random.key(1))
    ready = []
    for j in range(2 * execution.IN_FLIGHT):
        state = runner.step(state, dev["train"], perm, np.int32(j), jax.random.key(2))
        ready.append(state["sums"].is_ready())
    assert ready[execution.IN_FLIGHT - 1] and ready[2 * execution.IN_FLIGHT - 1]


# A gentle recipe (16 steps at lr 1e-3) for whole runs: float drift between two
# programs grows with every step of chaotic training; here it stays at float level.
GENTLE = QUICK.model_copy(update={"epochs": 1, "batch_size": 256, "learning_rate": 1e-3})


@pytest.fixture(scope="module")
def single_seeds(fmnist):
    """Seeds 3 and 5 trained alone (3 steps), and seed 5's whole gentle run."""
    alone = {seed: _params_after([seed], 3, fmnist, QUICK) for seed in (3, 5)}
    five = records(SMALL, GENTLE, fmnist, [5])[0]
    return alone, five


@pytest.mark.parametrize("how", ["loop", "vmap"])  # the CPU's way, and accelerators'
def test_seeds_in_one_program_match_separate_runs(fmnist, single_seeds, how):
    """Same init, batches, dropout masks and updates per seed, to float tolerance;
    and a whole run of two seeds gives each seed's record, as two runs would."""
    alone, five = single_seeds
    together = _params_after([3, 5], 3, fmnist, QUICK, settings=Settings(seeds=how))
    for i, seed in enumerate((3, 5)):
        jax.tree.map(
            lambda t, a, i=i: np.testing.assert_allclose(t[i], a, rtol=1e-4, atol=1e-4),
            together,
            alone[seed],
        )
    first = jax.tree_util.tree_leaves(together)[0]
    assert not np.allclose(first[0], first[1])  # really two seeds
    both = records(SMALL, GENTLE, fmnist, [3, 5], settings=Settings(seeds=how))
    assert [r["seed"] for r in both] == [3, 5] and both[0]["test_loss"] != both[1]["test_loss"]
    assert all(r["seeds_in_program"] == 2 for r in both) and five["seeds_in_program"] == 1
    # Batched convolutions sum in another order (~1e-7 relative); over an epoch
    # of steps that drifts, but stays far below the seed-to-seed spread.
    assert both[1]["test_loss"] == pytest.approx(five["test_loss"], rel=1e-3)
    assert abs(both[1]["accuracy"] - five["accuracy"]) <= 0.01  # near-ties may flip
    assert both[1]["train_loss"] == pytest.approx(five["train_loss"], rel=1e-3)


def test_seeds_run_one_after_another_on_cpu_unless_told():
    assert not execution.seeds_vmapped(Settings())  # the tests run on the CPU
    assert execution.seeds_vmapped(Settings(), backend="gpu")
    assert execution.seeds_vmapped(Settings(seeds="vmap"))
    assert not execution.seeds_vmapped(Settings(seeds="loop"), backend="gpu")
    with pytest.raises(SettingError, match="EXPLORER_SEEDS: expected one of auto, vmap, loop"):
        settings.from_env({"EXPLORER_SEEDS": "pmap"})


def test_nan_loss_stops_the_run_with_a_failed_status(fmnist):
    # A learning rate a million times too large: the loss diverges in the first epoch.
    recipe = QUICK.model_copy(update={"epochs": 5, "optimizer": "sgd", "learning_rate": 1e6})
    run = train.start(arch.plan(SMALL), recipe, fmnist, [0])
    seen = [m["epoch"] for m in train.epochs(run)]
    [rec] = rows.trained(run, fmnist)
    assert rec["status"] == "failed"
    assert "loss became nan in epoch 1" in rec["error"]
    assert rec["epochs_done"] == 1  # stopped instead of running epochs 2..5
    assert seen == []
    assert np.isnan(rec["accuracy"])


def test_a_batch_larger_than_the_data_set_fails_the_run(fmnist):
    recipe = QUICK.model_copy(update={"batch_size": 2 * len(fmnist.x_train)})
    with pytest.raises(train.TrainingFailed, match="larger than the 4096 training images"):
        train.start(arch.plan(SMALL), recipe, fmnist, [0])


def test_record_has_measured_costs_and_int8(fmnist):
    recipe = QUICK.model_copy(update={"epochs": 2})  # one epoch is still near chance
    [rec] = records(SMALL, recipe, fmnist, [0], costs=True)
    # int8 weights plus float32 biases and per-channel scales: a quarter and a bit
    assert 0.25 < rec["bytes_int8"] / rec["bytes_f32"] < 0.32
    full = complexity.summary(
        arch.plan(arch.preset("squeezenet1_1", num_classes=10, image_size=28, in_channels=1))
    )
    assert full["bytes_int8"] / full["bytes_f32"] == pytest.approx(0.25, abs=0.01)
    assert 0.3 < rec["int8_accuracy"] and abs(rec["int8_accuracy"] - rec["accuracy"]) < 0.05
    assert 0 < rec["latency_b1_ms"] < rec["latency_b128_ms"]
    assert rec["compile_s"] > 0 and rec["images_per_s"] > 0 and rec["wall_s"] > 0
    assert rec["device"]


def test_int8_quantisation_is_per_channel_and_within_half_a_step():
    w = jax.random.normal(jax.random.key(0), (3, 3, 8, 4)) * np.array([1e-3, 1e-1, 1.0, 10.0])
    q = np.asarray(measure.quantize_int8({"kernel": w, "bias": w[0, 0, 0]})["kernel"])
    w = np.asarray(w)
    scale = np.abs(w).max(axis=(0, 1, 2)) / 127  # one scale per output channel
    assert np.all(np.abs(q - w) <= scale / 2 + 1e-9)
    assert not np.array_equal(q, w)
    steps = q / scale
    assert np.allclose(steps, np.round(steps), atol=1e-3)  # on the int8 grid
    # Seed-batched kernels quantise each seed separately.
    both = np.asarray(measure.quantize_int8(np.stack([w, 2 * w]), batch_dims=1))
    assert np.allclose(both[1], 2 * both[0], rtol=1e-5)


def test_schedules():
    recipe = Recipe(epochs=10, learning_rate=0.1, warmup_epochs=1.0, schedule="poly")
    lr = train.schedule(recipe, steps_per_epoch=10)
    assert float(lr(0)) == pytest.approx(0.01)
    assert float(lr(10)) == pytest.approx(0.1)
    assert float(lr(55)) == pytest.approx(0.05, rel=0.02)  # linear decay to 0
    assert float(lr(100)) == pytest.approx(0.0, abs=1e-6)
    cos = train.schedule(recipe.model_copy(update={"schedule": "cosine"}), 10)
    assert float(cos(55)) == pytest.approx(0.05, rel=0.02) and float(cos(100)) < 1e-6


def test_augment_is_a_crop_of_the_padded_image_maybe_flipped():
    rng = np.random.default_rng(0)
    x = rng.integers(1, 256, (16, 12, 12, 3), dtype=np.uint8)  # no zeros: padding shows
    padded = np.pad(x, ((0, 0), (4, 4), (4, 4), (0, 0)))
    seen = set()
    for k in range(4):
        y = np.asarray(train.augment(jax.random.key(k), x))
        assert y.shape == x.shape and y.dtype == x.dtype
        for img, src in zip(y, padded, strict=True):
            found = [
                (dy, dx, flip)
                for dy in range(9)
                for dx in range(9)
                for flip in (False, True)
                if np.array_equal(
                    img,
                    (src[dy : dy + 12, dx : dx + 12])[:, ::-1]
                    if flip
                    else src[dy : dy + 12, dx : dx + 12],
                )  # fmt: skip
            ]
            assert found, "not a crop of the zero-padded image"
            seen.update(found)
    # both flips and shifted crops occur over 64 images
    assert {f for _, _, f in seen} == {False, True}
    assert any((dy, dx) != (4, 4) for dy, dx, _ in seen)


def test_compilation_cache_fills_its_folder(tmp_path, fmnist):
    # The process compiled with another folder first (the other tests did too).
    devices.compilation_cache(tmp_path / "first")
    try:
        jax.jit(lambda x: x * 3 + 1)(np.float32(2)).block_until_ready()
        assert any((tmp_path / "first").iterdir())
        folder = devices.compilation_cache(tmp_path / "jax")
        train.make_runner(models.build(arch.plan(SMALL.replace(base_e=24))), QUICK, fmnist)
        assert any((tmp_path / "jax").iterdir())
    finally:
        devices.compilation_cache(settings.from_env().cache_folder)
    assert folder == str(tmp_path / "jax")


def test_cli_train_writes_a_record(tmp_path, capsys):
    out = tmp_path / "rec.json"
    argv = [
        "train",
        "--model",
        "squeezenet1_1",
        "--set",
        "conv1_filters=16",
        "--set",
        "base_e=16",
        "--set",
        "incr_e=16",
        "--set",
        "optimizer=adam",
        "--set",
        "learning_rate=0.003",
        "--set",
        "warmup_epochs=0",
        "--set",
        "batch_size=64",
        "--epochs",
        "1",
        "--train-size",
        "1024",
        "--test-size",
        "256",
        "--json",
        str(out),
    ]
    assert cli.main(argv) == 0
    rec = json.loads(out.read_text())
    assert rec["status"] == "ok" and rec["base_e"] == 16 and rec["optimizer"] == "adam"
    assert rec["epochs_done"] == 1 and rec["test_examples"] == 256
    err = capsys.readouterr().err
    assert "epoch  1/1" in err and "test acc" in err


def test_cli_train_bad_input_exit_2(capsys):
    assert cli.main(["train", "--dataset", "no_such_data"]) == 2
    assert "no_such_data" in capsys.readouterr().err
    assert cli.main(["train", "--set", "batch_size=zero"]) == 2
    assert "batch_size" in capsys.readouterr().err


def test_a_recipe_written_with_the_retired_fault_fields_still_reads():
    old = QUICK.model_dump() | {"inject_fault": "none", "fault_epoch": 1}
    assert Recipe.model_validate_json(json.dumps(old)) == QUICK
    with pytest.raises(ValueError, match="inject_fault"):  # a live fault: an unknown key
        Recipe.model_validate_json(json.dumps(old | {"inject_fault": "nan"}))
