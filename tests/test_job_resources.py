"""scl.job_resources: memory and time limits of workflow jobs, from an experiment set's `resources`."""

from pathlib import Path

import pytest
import yaml

from scl.config import ConfigError
from scl.job_resources import DEFAULT, for_set

WHERE = "experiment_sets.paper.resources"


def test_a_set_without_a_block_gets_the_defaults():
    res = for_set(None, WHERE, ["digits"])
    assert set(res) == {"train", "baseline"}
    assert res["train"].mem_mb == DEFAULT["mem_mb"] and res["train"].runtime_for("digits") == DEFAULT["runtime"]


def test_one_number_or_one_per_dataset_and_retries_get_more_time():
    block = {
        "train": {"mem_mb": 16000, "runtime": {"cifar10": 120, "tiny-imagenet": 600}},
        "baseline": {"runtime": 90},
    }
    res = for_set(block, WHERE, ["cifar10", "tiny-imagenet"])
    assert res["train"].mem_mb == 16000
    assert res["train"].runtime_for("cifar10") == 120
    assert res["train"].runtime_for("tiny-imagenet") == 600
    assert res["train"].runtime_for("tiny-imagenet", attempt=2) == 1200  # the retry resumes with twice the time
    assert res["baseline"].mem_mb == DEFAULT["mem_mb"] and res["baseline"].runtime_for("cifar10", 3) == 270


@pytest.mark.parametrize("block, message", [
    ({"train": {"runtime": {"cifar10": 120}}}, "resources.train.runtime gives no time for stl10"),
    ({"train": {"mem_mb": 0}}, "resources.train.mem_mb: expected a whole number >= 100"),
    ({"baseline": {"runtime": 1.5}}, "resources.baseline.runtime: expected a whole number >= 1"),
    ({"train": {"runtime": {"cifar10": 10, "stl10": True}}}, "runtime.stl10"),
    ({"train": {"memory": 100}}, "unknown key(s) memory"),
    ({"prepare": {"mem_mb": 100}}, "unknown kind(s) of job prepare"),
    ([1], "expected a block like"),
])
def test_bad_blocks_name_the_key_and_the_fix(block, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        for_set(block, WHERE, ["cifar10", "stl10"])


def test_params_yaml_gives_every_set_a_valid_block():
    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    for name, es in params["experiment_sets"].items():
        res = for_set(es.get("resources"), f"experiment_sets.{name}.resources", es["datasets"])
        for kind in res.values():
            for d in es["datasets"]:
                assert kind.runtime_for(d) >= 1
    paper = params["experiment_sets"]["paper"]["resources"]
    assert set(paper["train"]["runtime"]) == set(params["experiment_sets"]["paper"]["datasets"])
