"""Data sets: the offline Fashion-MNIST IDX files, and the TFDS path on mock data."""

import gzip

import numpy as np
import pytest
import tensorflow_datasets as tfds

from explorer import cli
from explorer import data as datasets


def test_fashion_mnist_loads_offline_as_uint8():
    d = datasets.load("fashion_mnist")
    assert d.x_train.shape == (60000, 28, 28, 1) and d.x_train.dtype == np.uint8
    assert d.x_test.shape == (10000, 28, 28, 1)
    assert d.y_train.dtype == np.int32 and set(np.unique(d.y_test)) == set(range(10))
    assert np.bincount(d.y_test).tolist() == [1000] * 10  # the real test set is balanced
    assert 60 < float(d.mean[0]) < 85 and 80 < float(d.std[0]) < 100  # 72.9 and 90.0
    small = datasets.load("fashion_mnist", train_size=100, test_size=10)
    assert np.array_equal(small.x_train, d.x_train[:100]) and len(small.y_test) == 10


def test_missing_idx_files_say_how_to_get_them(tmp_path):
    with pytest.raises(datasets.DatasetError, match="apt-get install dataset-fashion-mnist"):
        datasets.load("fashion_mnist", fashion_mnist_dir=str(tmp_path))


def test_corrupt_idx_file_is_named(tmp_path):
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        (tmp_path / name).write_bytes(gzip.compress(b"\x00\x00\x0d\x01junk"))
    with pytest.raises(datasets.DatasetError, match="train-images-idx3-ubyte.gz"):
        datasets.load("fashion_mnist", fashion_mnist_dir=str(tmp_path))


def test_other_datasets_load_through_tfds_mock_data():
    with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE):
        d = datasets.load("cifar10")
    assert d.x_train.shape == (12, 32, 32, 3) and d.x_train.dtype == np.uint8
    assert d.x_test.shape == (12, 32, 32, 3)
    assert d.y_train.min() >= 0 and d.y_train.max() < 10
    assert d.mean.shape == (3,) and d.info == datasets.DataInfo("cifar10", 32, 3, 10)


def test_grey_tfds_dataset_gets_a_channel_axis():
    with tfds.testing.mock_data(num_examples=5, policy=tfds.testing.MockPolicy.USE_CODE):
        d = datasets.load("mnist", train_size=4)
    assert d.x_train.shape == (4, 28, 28, 1) and d.x_test.shape == (5, 28, 28, 1)


def test_fashion_mnist_with_a_data_dir_goes_through_tfds():
    with tfds.testing.mock_data(num_examples=7, policy=tfds.testing.MockPolicy.USE_CODE):
        d = datasets.load("fashion_mnist", data_dir="/nonexistent-data-dir")
    assert d.x_train.shape == (7, 28, 28, 1)


def test_unprepared_tfds_dataset_says_how_to_prepare_it(tmp_path):
    with pytest.raises(datasets.DatasetError, match="tfds build cifar10"):
        datasets.load("cifar10", data_dir=str(tmp_path))


def test_unknown_dataset_is_a_clear_error(capsys):
    with pytest.raises(datasets.DatasetError, match="unknown data set 'imagenot'"):
        datasets.info("imagenot")
    assert cli.main(["inspect", "--dataset", "imagenot"]) == 2
    assert "imagenot" in capsys.readouterr().err
