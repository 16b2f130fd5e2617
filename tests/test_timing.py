"""Wall-clock times kept apart from a run's results (scl/timing.py)."""

import json

from scl.timing import merge_timing, split_timing, write_timing

RECORDS = [{"epoch": 1, "loss": 2.5, "acc": 0.4, "epoch_time_s": 3.0, "samples_per_s": 100.0},
           {"epoch": 2, "loss": 2.1, "acc": 0.5, "epoch_time_s": 2.0, "samples_per_s": 150.0}]


def test_split_leaves_no_time_in_the_results():
    results, timing = split_timing(RECORDS)
    assert results == [{"epoch": 1, "loss": 2.5, "acc": 0.4}, {"epoch": 2, "loss": 2.1, "acc": 0.5}]
    assert timing == [{"epoch": 1, "epoch_time_s": 3.0, "samples_per_s": 100.0},
                      {"epoch": 2, "epoch_time_s": 2.0, "samples_per_s": 150.0}]


def test_resume_gets_the_times_back(tmp_path):
    write_timing(tmp_path, RECORDS)
    assert json.loads((tmp_path / "timing.json").read_text())["train_time_s"] == 5.0
    untimed = split_timing(RECORDS)[0]  # what a checkpoint holds
    assert merge_timing(tmp_path, untimed) == RECORDS
    assert merge_timing(tmp_path / "missing", untimed) == untimed  # no timing.json: no times, no error


def test_the_execution_choice_goes_with_the_times(tmp_path):
    """amp / channels_last chosen by `auto` depend on the machine: timing.json, not the log."""
    records = [{**RECORDS[0], "execution": {"amp": "bf16", "amp_why": "auto -> bf16"}}, RECORDS[1]]
    results, timing = split_timing(records)
    assert all("execution" not in r for r in results)
    assert timing[0]["execution"]["amp"] == "bf16" and "execution" not in timing[1]
    write_timing(tmp_path, records)
    assert merge_timing(tmp_path, results) == records
