"""scl.job_resources: memory and time limits of workflow jobs, from params.yaml's `resources`."""

from pathlib import Path

import pytest
import yaml

from scl.config import ConfigError
from scl.job_resources import DEFAULT, for_set


def test_a_set_without_a_block_gets_the_defaults():
    res = for_set({}, "digits", ["digits"])
    assert set(res) == {"train", "baseline"}
    assert res["train"].mem_mb == DEFAULT["mem_mb"] and res["train"].runtime_for("digits") == DEFAULT["runtime"]


def test_one_number_or_one_per_dataset_and_retries_get_more_time():
    params = {"resources": {"paper": {
        "train": {"mem_mb": 16000, "runtime": {"cifar10": 120, "tiny-imagenet": 600}},
        "baseline": {"runtime": 90},
    }}}
    res = for_set(params, "paper", ["cifar10", "tiny-imagenet"])
    assert res["train"].mem_mb == 16000
    assert res["train"].runtime_for("cifar10") == 120
    assert res["train"].runtime_for("tiny-imagenet") == 600
    assert res["train"].runtime_for("tiny-imagenet", attempt=2) == 1200  # the retry resumes with twice the time
    assert res["baseline"].mem_mb == DEFAULT["mem_mb"] and res["baseline"].runtime_for("cifar10", 3) == 270


@pytest.mark.parametrize("block, message", [
    ({"train": {"runtime": {"cifar10": 120}}}, "no time for stl10"),
    ({"train": {"mem_mb": 0}}, "mem_mb: expected a whole number >= 100"),
    ({"baseline": {"runtime": 1.5}}, "runtime: expected a whole number >= 1"),
    ({"train": {"runtime": {"cifar10": 10, "stl10": True}}}, "runtime.stl10"),
    ({"train": {"memory": 100}}, "unknown key(s) memory"),
])
def test_bad_blocks_name_the_key_and_the_fix(block, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        for_set({"resources": {"paper": block}}, "paper", ["cifar10", "stl10"])


def test_params_yaml_gives_every_set_a_valid_block():
    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    for name, es in params["experiment_sets"].items():
        res = for_set(params, name, es["datasets"])
        for kind in res.values():
            for d in es["datasets"]:
                assert kind.runtime_for(d) >= 1
