"""params.yaml read strictly: integers are ints, numbers are finite, a key given twice is
refused, YAML 1.1's string reading of `5e-2` and Snakemake's --config strings are handled."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from scl.config import (ConfigError, load_params, parse_overrides, resolve, settings_from_json, settings_to_json,
                        validate_params)

ROOT = Path(__file__).resolve().parents[1]
PARAMS_TEXT = (ROOT / "params.yaml").read_text()


@pytest.fixture(scope="module")
def params():
    return load_params(ROOT / "params.yaml")


def _write(tmp_path, old: str, new: str) -> Path:
    assert old in PARAMS_TEXT, old
    path = tmp_path / "params.yaml"
    path.write_text(PARAMS_TEXT.replace(old, new, 1))
    return path


def test_a_float_is_not_an_integer(tmp_path):
    with pytest.raises(ConfigError, match=r"train.epochs: 64.0 is not an integer; write 64"):
        load_params(_write(tmp_path, "  epochs: 200\n", "  epochs: 64.0\n"))


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_non_finite_numbers_are_refused(tmp_path, value):
    with pytest.raises(ConfigError, match=r"train.lr: .* is not a finite number"):
        load_params(_write(tmp_path, "  lr: 0.03\n", f"  lr: {value}\n"))


def test_a_duplicate_key_is_refused_with_both_lines(tmp_path):
    path = _write(tmp_path, "  lr: 0.03\n", "  lr: 0.03\n  lr: 50\n")
    with pytest.raises(ConfigError, match=r"key 'lr' is given twice in one block \(first on line \d+\)"):
        load_params(path)


def test_the_same_key_in_two_blocks_is_fine(params):
    assert params["train"]["epochs"] == 200 and params["datasets"]["digits"]["train"]["epochs"] == 40


def test_scientific_notation_without_a_dot_is_a_number(tmp_path):
    p = load_params(_write(tmp_path, "  lr: 0.03\n", "  lr: 5e-2\n"))
    assert p["train"]["lr"] == 0.05 and isinstance(p["train"]["lr"], float)


def test_a_quoted_number_that_cannot_be_one_keeps_its_hint(params):
    q = copy.deepcopy(params)
    q["train"]["lr"] = "5e-2x"
    with pytest.raises(ConfigError, match="train.lr"):
        validate_params(q)


def test_snakemake_config_strings_become_the_values_meant(params):
    """`--config 'train={"epochs": 5}'` reaches the Snakefile as {"train": {"epochs": "5"}}."""
    q = copy.deepcopy(params)
    q["train"].update(epochs="5", lr="5e-2", compile="false", tasks=["target"])
    q["experiment_sets"]["smoke"]["seeds"] = ["0", "1"]
    validate_params(q)
    assert q["train"]["epochs"] == 5 and q["train"]["lr"] == 0.05 and q["train"]["compile"] is False
    assert q["experiment_sets"]["smoke"]["seeds"] == [0, 1]


def test_strings_the_schema_allows_stay_strings(params):
    q = copy.deepcopy(params)
    q["data"]["folder"] = "123"
    validate_params(q)
    assert q["data"]["folder"] == "123"


@pytest.mark.parametrize("item, message", [
    ("epochs=2.0", "epochs: 2.0 is not an integer"),
    ("lr=.nan", "lr: nan is not a finite number"),
    ("lr=.inf", "lr: inf is not a finite number"),
    ("batch_size=true", "batch_size"),
])
def test_overrides_are_as_strict_as_the_file(params, item, message):
    with pytest.raises(ConfigError, match=message):
        resolve(params, "digits", "scl", 0, parse_overrides([item]))


def test_override_scientific_notation(params):
    assert resolve(params, "digits", "scl", 0, parse_overrides(["lr=5e-2"])).train.lr == 0.05


def test_channels_must_be_an_int(params):
    q = copy.deepcopy(params)
    q["datasets"]["digits"]["channels"] = 1.0
    with pytest.raises(ConfigError, match="channels: 1.0 is not an integer"):
        validate_params(q)


def test_settings_json_is_read_as_strictly(params):
    """The workflow's --settings JSON: json.loads reads NaN and 64.0; neither gets past."""
    good = json.loads(settings_to_json(resolve(params, "digits", "scl", 0)))
    for key, value, message in (("lr", float("nan"), "not a finite number"), ("epochs", 64.0, "not an integer")):
        bad = copy.deepcopy(good)
        bad["train"][key] = value
        with pytest.raises(ConfigError, match=message):
            settings_from_json(json.dumps(bad))


@pytest.mark.slow
def test_snakemake_refuses_a_duplicate_key_and_takes_config_strings(tmp_path):
    """The workflow reads params.yaml as strictly as `scl train` does."""
    import shutil

    work = tmp_path / "wf"
    shutil.copytree(ROOT / "workflow", work / "workflow")
    shutil.copy(ROOT / "Snakefile", work)
    (work / "params.yaml").write_text(PARAMS_TEXT.replace("  lr: 0.03\n", "  lr: 0.03\n  lr: 50\n", 1))
    snakemake = Path(sys.executable).with_name("snakemake")
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT)}
    dup = subprocess.run([str(snakemake), "-n", "--cores", "1", "--config", "experiment_set=smoke"], cwd=work,
                         capture_output=True, text=True, env=env)
    assert dup.returncode != 0 and "given twice" in dup.stdout + dup.stderr
    (work / "params.yaml").write_text(PARAMS_TEXT)
    ok = subprocess.run([str(snakemake), "-n", "--cores", "1", "--config", "experiment_set=smoke",
                         'train={"epochs": 5}'], cwd=work, capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]
