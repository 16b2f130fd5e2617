"""Settings checked against the data and the machine before any work starts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from scl.config import ConfigError, load_params, resolve
from scl.data.prepared import PreparedData
from scl.preflight import check_device, check_labels, check_run_inputs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def params():
    return load_params(ROOT / "params.yaml")


def _data(n=200, classes=10, channels=1, size=8):
    images = np.zeros((n, size, size, channels), np.uint8)
    return PreparedData(images, np.arange(n) % classes, [str(i) for i in range(classes)])


def test_a_good_match_passes(params):
    check_run_inputs(resolve(params, "digits", "scl", 0, {"device": "cpu"}), _data())


def test_a_three_channel_recipe_on_one_channel_images(params):
    with pytest.raises(ConfigError, match="'mocov2' is a 3-channel recipe but digits has 1-channel images; "
                                          "use augment: grayscale or digits"):
        check_run_inputs(resolve(params, "digits", "scl", 0, {"augment": "mocov2"}), _data())


def test_image_shape_unlike_the_dataset_block(params):
    with pytest.raises(ConfigError, match=r"prepared images are \(8, 8, 3\).*8x8x1"):
        check_run_inputs(resolve(params, "digits", "scl", 0), _data(channels=3))


def test_num_classes_unlike_the_labels(params):
    with pytest.raises(ConfigError, match="the labels have 7 classes but num_classes is 10; .*num_classes: 7"):
        check_run_inputs(resolve(params, "digits", "scl", 0), _data(classes=7))


def test_one_class_is_refused():
    with pytest.raises(ConfigError, match="every image has label 3: one class cannot be scored"):
        check_labels(np.full(50, 3), 1, "data")


def test_a_single_unknown_label_does_not_silently_unlabel_the_set():
    labels = np.arange(100) % 10
    labels[0] = -1
    with pytest.raises(ConfigError, match="1 of 100 images have label -1"):
        check_labels(labels, 10, "data")


def test_a_fully_unlabelled_set_is_fine():
    check_labels(np.full(100, -1), 10, "data")


def test_labels_below_minus_one():
    with pytest.raises(ConfigError, match="labels below -1"):
        check_labels(np.array([0, 1, -2]), 2, "data")


def test_too_few_images(params):
    with pytest.raises(ConfigError, match="batch_size"):
        check_run_inputs(resolve(params, "digits", "scl", 0), _data(n=20))


@pytest.mark.skipif(getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
                    reason="this machine has MPS")
def test_mps_without_mps():
    with pytest.raises(ConfigError, match="device 'mps': .*use device=cpu or auto"):
        check_device("mps")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda():
    with pytest.raises(ConfigError, match="CUDA is not available"):
        check_device("cuda:1")
