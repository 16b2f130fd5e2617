"""params.yaml -> validated run settings (scl/config.py)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from scl.config import (
    TRAIN_KEYS,
    ConfigError,
    RunSettings,
    load_params,
    parse_overrides,
    resolve,
)

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


@pytest.fixture(scope="module")
def real():
    return yaml.safe_load(PARAMS.read_text())


def write(tmp_path, params, name="params.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(params))
    return path


def load_mutated(tmp_path, real, mutate):
    params = copy.deepcopy(real)
    mutate(params)
    return load_params(write(tmp_path, params))


# ----------------------------------------------------------------- the real file
def test_real_params_load_and_resolve_everywhere():
    params = load_params(PARAMS)
    assert set(TRAIN_KEYS) <= set(params["train"])
    for dataset in params["datasets"]:
        for variant in params["variants"]:
            run = resolve(params, dataset, variant, seed=0)
            assert isinstance(run, RunSettings)
            assert run.dataset.name == dataset and run.variant == variant
            assert isinstance(run.train.tasks, tuple)


def test_real_params_paper_defaults():
    params = load_params(PARAMS)
    t = resolve(params, "cifar10", "scl").train
    assert (t.backbone, t.epochs, t.batch_size, t.lr, t.temperature, t.ema_momentum) == ("resnet34", 200, 256, 0.03, 0.1, 0.9)
    assert t.weight_decay == 0.0005 and t.memory_size == 4096 and t.lr_schedule == "cosine"
    assert t.tasks == ("target", "under", "instance")
    assert resolve(params, "tiny-imagenet", "scl").train.memory_size == 8192


def test_real_params_dataset_and_variant_layers():
    params = load_params(PARAMS)
    run = resolve(params, "digits", "moco", seed=3)
    assert run.seed == 3
    assert run.dataset.num_classes == 10 and run.dataset.image_size == 8 and run.dataset.channels == 1
    digits_block = params["datasets"]["digits"]["train"]
    assert run.train.backbone == "small_cnn" == digits_block["backbone"]  # from datasets.digits.train
    assert run.train.epochs == digits_block["epochs"] != params["train"]["epochs"]
    assert run.train.tasks == ("instance",) and run.train.reweight is False  # from variants.moco
    assert run.train.lr == digits_block["lr"]
    d = run.to_dict()
    assert d["train"]["tasks"] == ("instance",) and d["dataset"]["name"] == "digits"


# ----------------------------------------------------------------- resolve order
def test_resolve_order_later_wins(tmp_path, real):
    params = copy.deepcopy(real)
    params["train"]["lr"] = 0.01
    params["train"]["epochs"] = 11
    params["train"]["weight_decay"] = 0.123
    params["datasets"]["digits"]["train"].update(lr=0.02, epochs=22)
    params["variants"]["v"] = {"lr": 0.03}
    params["variants"]["w"] = {}
    params = load_params(write(tmp_path, params))

    assert resolve(params, "cifar10", "w").train.lr == 0.01  # train only
    assert resolve(params, "digits", "w").train.lr == 0.02  # dataset beats train
    assert resolve(params, "digits", "v").train.lr == 0.03  # variant beats dataset
    run = resolve(params, "digits", "v", overrides={"lr": 0.04})
    assert run.train.lr == 0.04  # --set beats everything
    assert run.overrides == {"lr": 0.04}
    # keys not set by a later layer come from the earlier one
    assert run.train.epochs == 22 and run.train.weight_decay == 0.123
    assert resolve(params, "cifar10", "v").train.epochs == 11


def test_resolve_override_of_tasks_becomes_tuple(real):
    params = load_params(PARAMS)
    run = resolve(params, "cifar10", "scl", overrides=parse_overrides(["tasks=[target, instance]"]))
    assert run.train.tasks == ("target", "instance")


# ----------------------------------------------------------------- file errors
def test_unknown_top_level_key(tmp_path, real):
    with pytest.raises(ConfigError, match="unknown key 'tranin'") as e:
        load_mutated(tmp_path, real, lambda p: p.__setitem__("tranin", {}))
    assert "(did you mean 'train'?)" in str(e.value)
    assert "allowed keys" in str(e.value)


def test_unknown_train_key_did_you_mean(tmp_path, real):
    with pytest.raises(ConfigError) as e:
        load_mutated(tmp_path, real, lambda p: p["train"].__setitem__("epochz", 3))
    msg = str(e.value)
    assert "'epochz'" in msg and "(did you mean 'epochs'?)" in msg and "under train" in msg
    assert str(tmp_path / "params.yaml") in msg  # names the file


def test_unknown_key_in_variant_and_dataset(tmp_path, real):
    with pytest.raises(ConfigError, match=r"'lrr' \(did you mean 'lr'\?\) under variants.x"):
        load_mutated(tmp_path, real, lambda p: p["variants"].__setitem__("x", {"lrr": 0.1}))
    with pytest.raises(ConfigError, match="datasets.cifar10"):
        load_mutated(tmp_path, real, lambda p: p["datasets"]["cifar10"].__setitem__("num_clases", 10))


def test_wrong_type(tmp_path, real):
    with pytest.raises(ConfigError, match=r"train\.epochs: 'ten' is not of type 'integer'"):
        load_mutated(tmp_path, real, lambda p: p["train"].__setitem__("epochs", "ten"))


def test_negative_epochs(tmp_path, real):
    with pytest.raises(ConfigError, match=r"train\.epochs: -1 is less than the minimum of 1"):
        load_mutated(tmp_path, real, lambda p: p["train"].__setitem__("epochs", -1))
    with pytest.raises(ConfigError, match=r"datasets\.digits\.train\.epochs"):
        load_mutated(tmp_path, real, lambda p: p["datasets"]["digits"]["train"].__setitem__("epochs", 0))


@pytest.mark.parametrize(
    "key,value",
    [("backbone", "resnet50"), ("tasks", []), ("tasks", ["target", "target"]), ("temperature", 0), ("device", "gpu"), ("ema_momentum", 1.5)],
)
def test_bad_train_values(tmp_path, real, key, value):
    with pytest.raises(ConfigError, match=f"train.{key}"):
        load_mutated(tmp_path, real, lambda p: p["train"].__setitem__(key, value))


def test_missing_train_key(tmp_path, real):
    with pytest.raises(ConfigError, match="missing: lr"):
        load_mutated(tmp_path, real, lambda p: p["train"].pop("lr"))


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)
    notmap = tmp_path / "list.yaml"
    notmap.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_params(notmap)


# ----------------------------------------------------------------- resolve errors
def test_unknown_dataset_and_variant():
    params = load_params(PARAMS)
    with pytest.raises(ConfigError, match=r"unknown dataset 'cifar11'.*cifar10"):
        resolve(params, "cifar11")
    with pytest.raises(ConfigError, match=r"unknown variant 'mocoo'.*moco"):
        resolve(params, "cifar10", "mocoo")


def test_bad_overrides_rejected_by_resolve():
    params = load_params(PARAMS)
    with pytest.raises(ConfigError, match=r"epochs: 'ten' is not of type 'integer'"):
        resolve(params, "digits", overrides={"epochs": "ten"})
    with pytest.raises(ConfigError, match="epochs: -3 is less than the minimum"):
        resolve(params, "digits", overrides={"epochs": -3})
    with pytest.raises(ConfigError, match="tasks"):
        resolve(params, "digits", overrides={"tasks": ["over"]})


def test_bad_seed_and_memory_size():
    params = load_params(PARAMS)
    with pytest.raises(ConfigError, match="seed"):
        resolve(params, "digits", seed=-1)
    with pytest.raises(ConfigError, match="memory_size 5 gives empty banks"):
        resolve(params, "digits", overrides={"memory_size": 5})  # 10 classes need >= 9
    assert resolve(params, "digits", overrides={"memory_size": 9}).train.memory_size == 9


# ----------------------------------------------------------------- --set parsing
def test_parse_overrides():
    assert parse_overrides(["tasks=[target]", "lr=0.1"]) == {"tasks": ["target"], "lr": 0.1}
    got = parse_overrides(["epochs=5", "train.online_cd=false", "device=cuda:1", "memory_init = empty"])
    assert got == {"epochs": 5, "online_cd": False, "device": "cuda:1", "memory_init": "empty"}
    assert isinstance(got["epochs"], int)
    assert parse_overrides(None) == {} and parse_overrides([]) == {}
    assert parse_overrides(["device=a=b"]) == {"device": "a=b"}  # split on the first '='


def test_parse_overrides_bad_syntax():
    with pytest.raises(ConfigError, match=r"--set 'epochs': expected KEY=VALUE"):
        parse_overrides(["epochs"])


def test_parse_overrides_unknown_key():
    with pytest.raises(ConfigError, match=r"--set epochz: unknown training setting \(did you mean 'epochs'\?\)") as e:
        parse_overrides(["epochz=3"])
    assert "known:" in str(e.value)
    with pytest.raises(ConfigError, match="unknown training setting; known"):
        parse_overrides(["qqqqqq=1"])  # nothing close: no hint
