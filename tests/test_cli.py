"""`explorer inspect` as a user runs it."""

import json

import pytest

from explorer import cli

from .conftest import SPACES


@pytest.mark.parametrize("model, params", [("squeezenet1_0", 1248424), ("squeezenet1_1", 1235496)])
def test_inspect_preset_json_reports_torchvision_counts(capsys, model, params):
    argv = ["inspect", "--model", model, "--image-size", "224", "--num-classes", "1000", "--json"]
    assert cli.main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["num_points"] == 1
    assert doc["points"][0]["params"] == params
    assert doc["points"][0]["bytes_f32"] == 4 * params


def test_inspect_space_json_lists_every_point(capsys):
    assert cli.main(["inspect", str(SPACES / "squeeze_ratio.yaml"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    srs = [p["values"]["squeeze_ratio"] for p in doc["points"]]
    assert srs == [0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0]
    params = [p["params"] for p in doc["points"]]
    assert params == sorted(params) and len(set(params)) == 8
    assert all(p["layers"][0]["layer"] == "conv1" for p in doc["points"])


def test_inspect_text_table_and_layers(capsys):
    argv = ["inspect", "--dataset", "fashion_mnist", "--layers", "--set", "bypass=simple"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "726,474" in out and "identity" in out and "conv10" in out


def test_inspect_xla_flops_column(capsys):
    assert cli.main(["inspect", "--dataset", "fashion_mnist", "--xla"]) == 0
    assert "MFLOPs (XLA)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--set", "squeeze_ratio"], "expected key=value"),
        (["--set", "sq=1"], "--set sq: unknown metaparameter"),
        (["--set", "image_size=64"], "set by the data set"),
        (["--set", "pct3x3=2"], "pct3x3: expected a fraction"),
        (["--dataset", "nope_xyz"], "unknown data set"),
    ],
)
def test_bad_command_line_input_exits_2(capsys, argv, expected):
    assert cli.main(["inspect", *argv]) == 2
    assert expected in capsys.readouterr().err


@pytest.mark.parametrize(
    "env, value, expected",
    [
        ("EXPLORER_SEEDS", "pmap", "$EXPLORER_SEEDS: expected one of auto, vmap, loop, got 'pmap'"),
        ("EXPLORER_CONV", "winograd", "$EXPLORER_CONV: expected one of auto, mixed"),
    ],
)
def test_a_bad_setting_is_one_line_and_exit_2(capsys, monkeypatch, env, value, expected):
    monkeypatch.setenv(env, value)
    argv = ["train", "--model", "squeezenet1_1", "--dataset", "fashion_mnist", "--seeds", "2",
            "--epochs", "1", "--train-size", "256", "--test-size", "64"]  # fmt: skip
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert f"explorer: error: {expected}" in err and "Traceback" not in err
