"""The fast path (issue 4): channels_last, bf16 autocast, torch.compile, per-sample batched
augmentation on a device-resident batch, and `scl bench`. Small tensors only: seconds."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from scl.augment import build_augment, build_eval_transform
from scl.config import load_params, parse_overrides, resolve
from scl.data.prepared import PreparedData
from scl.device import amp_dtype
from scl.models.scl_model import SCLConfig, SCLModel
import scl.device as device_mod
from scl.device import resolve_amp, resolve_channels_last
from scl.train import Trainer, TrainingError, infer_all

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


def _model(backbone="resnet18", channels=3, tasks=("target", "under", "instance"), memory_size=64) -> SCLModel:
    torch.manual_seed(0)
    return SCLModel(SCLConfig(backbone=backbone, in_channels=channels, num_classes=4, tasks=tasks,
                              backbone_width=8, memory_size=memory_size, feature_dim=16),
                    generator=torch.Generator().manual_seed(0))


def _batch(n=8, channels=3, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x_q = torch.randn(n, channels, size, size, generator=g)
    x_k = torch.randn(n, channels, size, size, generator=g)
    labels = {"target": torch.randint(0, 4, (n,), generator=g), "under": torch.randint(0, 2, (n,), generator=g)}
    counts = 1.0 + torch.rand(n, generator=g)
    weights = {"target": torch.ones(4), "under": torch.ones(2)}
    return x_q, x_k, labels, counts, weights


def _cl(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


# ---------------------------------------------------------------------------- same numbers


@pytest.mark.slow
def test_channels_last_gives_the_same_loss_and_gradients():
    plain = _model()
    fast = copy.deepcopy(plain).to(memory_format=torch.channels_last)
    assert fast.encoder_q.backbone.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    x_q, x_k, labels, counts, weights = _batch()
    loss_a, terms_a, keys_a = plain.training_step(x_q, x_k, labels, counts, weights)
    loss_b, terms_b, keys_b = fast.training_step(_cl(x_q), _cl(x_k), labels, counts, weights)
    assert loss_b.item() == pytest.approx(loss_a.item(), abs=1e-4)
    for k in terms_a:
        assert terms_b[k].item() == pytest.approx(terms_a[k].item(), abs=1e-4), k
    for t in keys_a:
        torch.testing.assert_close(keys_b[t], keys_a[t], atol=1e-4, rtol=0)
    loss_a.backward()
    loss_b.backward()
    # gradients agree as a whole; not element by element: in a model this small, a rounding
    # difference can flip a ReLU whose input is ~0, and one of a handful of terms of a sum
    ga = torch.cat([p.grad.flatten() for p in plain.parameters() if p.grad is not None])
    gb = torch.cat([p.grad.flatten() for p in fast.parameters() if p.grad is not None])
    assert ((gb - ga).norm() / ga.norm()).item() < 0.1
    # checkpoints are interchangeable: same keys, same values
    assert plain.state_dict().keys() == fast.state_dict().keys()


@pytest.mark.slow
def test_bf16_autocast_is_close_to_float32_and_keeps_the_losses_in_float32():
    plain = _model()
    fast = copy.deepcopy(plain)
    x_q, x_k, labels, counts, weights = _batch()
    loss_a, terms_a, _ = plain.training_step(x_q, x_k, labels, counts, weights)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss_b, terms_b, keys_b = fast.training_step(x_q, x_k, labels, counts, weights)
    assert torch.isfinite(loss_b)
    assert loss_b.item() == pytest.approx(loss_a.item(), rel=5e-2)
    # the losses, the features and the keys that go into the memories are float32
    assert loss_b.dtype == torch.float32 and all(v.dtype == torch.float32 for v in terms_b.values())
    assert all(k.dtype == torch.float32 for k in keys_b.values())
    loss_b.backward()
    fast.enqueue(keys_b, labels)
    assert all(m.keys.dtype == torch.float32 for m in fast.memories.values())
    # while the backbone really ran in bf16
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = fast.encoder_q.backbone.stem[0](x_q)
    assert h.dtype == torch.bfloat16


@pytest.mark.slow
def test_infer_all_respects_amp_and_channels_last():
    model = _model()
    images = torch.randint(0, 256, (10, 3, 16, 16), dtype=torch.uint8)
    eval_tf = build_eval_transform("mocov2", 16, 3)
    plain = infer_all(model, images, eval_tf, batch_size=4)
    fast_model = copy.deepcopy(model).to(memory_format=torch.channels_last)
    fast = infer_all(fast_model, images, eval_tf, batch_size=4, amp=torch.bfloat16, channels_last=True)
    assert plain.keys() == fast.keys()
    for k in plain:
        assert fast[k].dtype == np.float32 and np.isfinite(fast[k]).all(), k
        np.testing.assert_allclose(fast[k], plain[k], atol=5e-2, err_msg=k)


def test_amp_settings_are_checked():
    assert amp_dtype("off", CPU) is None
    assert amp_dtype("bf16", CPU) == torch.bfloat16
    with pytest.raises(TrainingError, match="fp16 needs a CUDA device"):
        amp_dtype("fp16", CPU)
    with pytest.raises(TrainingError, match="unknown amp"):
        amp_dtype("fp8", CPU)
    params = load_params(ROOT / "params.yaml")
    t = resolve(params, "digits").train
    # digits pins float32 (its committed numbers must not depend on the CPU); the others choose
    assert (t.amp, t.channels_last, t.compile, t.checkpoint_every) == ("off", False, False, 1)
    f = resolve(params, "fashion").train
    assert (f.amp, f.channels_last) == ("auto", "auto")  # no longer hard-coded bf16
    # YAML reads an unquoted `off` as false: --set amp=off still means off
    assert resolve(params, "digits", overrides=parse_overrides(["amp=off"])).train.amp == "off"
    assert resolve(params, "digits", overrides=parse_overrides(["amp=bf16", "channels_last=true"])).train.amp == "bf16"


@pytest.mark.parametrize("native", [True, False])
def test_amp_and_channels_last_auto_follow_the_hardware(native, monkeypatch, tmp_path):
    """auto: bf16 + channels_last where oneDNN reports native bf16, float32 + NCHW where it
    does not (an AVX2-only CPU, where bf16 convolutions were 9.5-12x slower); the run's log
    says what was chosen and why."""
    monkeypatch.setattr(device_mod, "_cpu_native_bf16", lambda: native)
    dtype, why = resolve_amp("auto", CPU)
    assert dtype == (torch.bfloat16 if native else None)
    assert why.startswith("auto -> bf16" if native else "auto -> float32") and "oneDNN" in why
    assert resolve_channels_last("auto", CPU, dtype)[0] is native
    # what is set is taken as set
    assert resolve_amp("off", CPU)[0] is None and resolve_amp("bf16", CPU)[0] == torch.bfloat16
    assert resolve_channels_last(True, CPU, None)[0] is True and resolve_channels_last(False, CPU, dtype)[0] is False
    trainer = Trainer(_tiny_settings(amp="auto", channels_last="auto", epochs=2), _tiny_data(), tmp_path,
                      progress=False)
    assert trainer.amp == dtype and trainer.channels_last is native
    trainer.run()
    # machine-dependent, like the times: in timing.json beside the process's first epoch, not in the log
    timing = json.loads((tmp_path / "timing.json").read_text())["epochs"]
    assert timing[0]["execution"]["amp"] == ("bf16" if native else "off") and "execution" not in timing[1]
    assert timing[0]["execution"]["channels_last"] is native and "oneDNN" in timing[0]["execution"]["amp_why"]
    assert all("execution" not in json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines())


def test_real_cpu_auto_choice_matches_onednn():
    dtype, _ = resolve_amp("auto", CPU)
    assert (dtype == torch.bfloat16) == bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


# ---------------------------------------------------------------------------- augmentation


@pytest.mark.parametrize(("recipe", "size", "channels"), [("mocov2", 32, 3), ("mocov2", 64, 3), ("grayscale", 28, 1),
                                                          ("digits", 8, 1)])
def test_batched_augmentation_equals_per_sample_application(recipe, size, channels):
    """Parameters drawn once for the batch and applied to the device-resident batch give,
    for every sample, what applying that sample's own parameters to it alone gives: the
    parameters really are per sample (unlike torchvision v2 on a batch tensor)."""
    aug = build_augment(recipe, size, channels)
    n = 6
    dataset = torch.randint(0, 256, (20, channels, size, size), dtype=torch.uint8,
                            generator=torch.Generator().manual_seed(1))
    idx = torch.tensor([3, 7, 7, 0, 19, 11])  # a repeated image too
    batch = dataset[idx]
    params = aug.sample_params(n, torch.Generator().manual_seed(2))
    out = aug.apply(batch, params)
    for i in range(n):
        one = aug.apply(batch[i : i + 1], {k: v[i : i + 1] for k, v in params.items()})
        torch.testing.assert_close(out[i : i + 1], one, atol=1e-5, rtol=0, msg=f"sample {i}")
    assert not torch.allclose(out[1], out[2])  # the same image, its own parameters


# ---------------------------------------------------------------------------- training


def _tiny_settings(**overrides):
    params = load_params(ROOT / "params.yaml")
    base = {"epochs": 1, "batch_size": 32, "memory_size": 64, "cnn_width": 8, "threads": 1,
            "save_features": False, "device": "cpu"}
    return resolve(params, "digits", "scl", 0, {**base, **overrides})


def _tiny_data(n=96) -> PreparedData:
    rng = np.random.default_rng(0)
    return PreparedData(images=rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8),
                        labels=rng.integers(0, 10, n).astype(np.int64), class_names=[str(i) for i in range(10)])


def test_one_epoch_with_bf16_and_channels_last_completes(tmp_path):
    metrics = Trainer(_tiny_settings(amp="bf16", channels_last=True), _tiny_data(), tmp_path, progress=False).run()
    for k in ("acc", "nmi", "ari"):
        assert np.isfinite(metrics[k]), k
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and np.isfinite(log[0]["loss"])


def test_fast_settings_may_change_on_resume(tmp_path):
    data = _tiny_data()
    Trainer(_tiny_settings(epochs=2), data, tmp_path, progress=False).run(stop_after_epoch=1)
    resumed = Trainer(_tiny_settings(epochs=2, amp="bf16", channels_last=True), data, tmp_path, progress=False)
    assert resumed.run() is not None and resumed.epoch == 2


@pytest.mark.slow
def test_compiled_encoders_keep_checkpoint_keys_and_losses():
    model = _model("small_cnn", channels=1, tasks=("instance",))
    keys = list(model.state_dict())
    eager = copy.deepcopy(model)
    model.compile_encoders(backend="eager")  # dynamo tracing only: quick anywhere
    assert list(model.state_dict()) == keys
    x = torch.randn(4, 1, 8, 8)
    loss_a, _, _ = eager.training_step(x, x, {})
    loss_b, _, _ = model.training_step(x, x, {})
    assert loss_b.item() == pytest.approx(loss_a.item(), abs=1e-5)


@pytest.mark.slow
def test_compile_failure_is_a_clear_training_error(tmp_path, monkeypatch):
    def broken_backend(gm, example_inputs):
        raise RuntimeError("no compiler here")

    original = SCLModel.compile_encoders
    monkeypatch.setattr(SCLModel, "compile_encoders", lambda self: original(self, backend=broken_backend))
    with pytest.raises(TrainingError, match="torch.compile of the encoders failed.*compile: false"):
        Trainer(_tiny_settings(compile=True), _tiny_data(), tmp_path, progress=False).run()


COMPILE_BUDGET_S = int(os.environ.get("SCL_TEST_COMPILE_BUDGET_S", 15))


@pytest.mark.slow
def test_one_epoch_with_compile(tmp_path):
    """compile=true end to end, where torch.compile (inductor: a C++ compiler per graph) can
    do it within COMPILE_BUDGET_S on this CPU; otherwise skipped, with the reason. Runs in
    its own process group so that an over-long compile is stopped cleanly."""
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); "
        "from test_fast import _tiny_settings, _tiny_data; from scl.train import Trainer, TrainingError\n"
        "try:\n"
        "    m = Trainer(_tiny_settings(compile=True), _tiny_data(), sys.argv[2], progress=False).run()\n"
        "except TrainingError as e:\n"
        "    print('TrainingError:', e); sys.exit(3)\n"
        "print(json.dumps({'acc': m['acc'], 'keys': sorted(__import__('torch').load(sys.argv[2] + '/checkpoint.pt',"
        " weights_only=False)['model'])}))\n"
    )
    env = {**os.environ, "TORCHINDUCTOR_COMPILE_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code, str(ROOT / "tests"), str(tmp_path)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=COMPILE_BUDGET_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.skip(f"torch.compile: a 1-epoch run of a tiny model needs more than {COMPILE_BUDGET_S} s on this CPU")
    if proc.returncode == 3:
        pytest.skip(f"torch.compile does not work on this machine: {out.strip()[:200]}")
    assert proc.returncode == 0, err[-2000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert np.isfinite(result["acc"])
    assert not [k for k in result["keys"] if "_orig_mod" in k]  # the checkpoint is an eager model's


# ---------------------------------------------------------------------------- scl bench


@pytest.mark.slow
def test_bench_runs_end_to_end_and_writes_every_figure(tmp_path):
    from scl.cli import main

    out = tmp_path / "bench.json"
    rc = main(["bench", "--backbone", "small_cnn", "--image-size", "16", "--batch-size", "8", "--steps", "2",
               "--warmup", "1", "--repeats", "2", "--num-workers", "0", "--device", "cpu", "--threads", "1",
               "--memory-size", "64", "--out", str(out)])
    assert rc == 0
    record = json.loads(out.read_text())
    assert set(record) >= {"machine", "settings", "results", "ratios", "flops", "goals"}
    assert set(record["results"]) == {"scl_step", "moco_v2_step", "batched_augment", "pil_loader"}
    for name, figure in record["results"].items():
        assert figure["samples_per_s"] > 0 and figure["ms_per_step"] > 0 and figure["cpu_ms_per_step"] > 0, name
        assert len(figure["rounds_samples_per_s"]) == 2, name
    ratios = record["ratios"]
    r = record["results"]
    assert ratios["scl_over_moco_v2_step_time"] == pytest.approx(r["scl_step"]["ms_per_step"] / r["moco_v2_step"]["ms_per_step"])
    assert ratios["scl_over_moco_v2_step_cpu_time"] == pytest.approx(
        r["scl_step"]["cpu_ms_per_step"] / r["moco_v2_step"]["cpu_ms_per_step"])
    # --amp / --channels-last default to auto and say what they chose on this CPU
    native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    assert record["settings"]["execution"]["amp"] == ("bf16" if native else "off")
    assert ratios["batched_over_pil_throughput"] == pytest.approx(
        record["results"]["batched_augment"]["samples_per_s"] / record["results"]["pil_loader"]["samples_per_s"])
    m = record["machine"]
    assert m["cpu_count"] >= 1 and m["torch"] == torch.__version__ and "torchvision" in m and "python" in m
    assert record["settings"]["batch_size"] == 8 and record["settings"]["num_workers"] == 0
    assert record["flops"]["forward_gflop_per_image"] > 0


def test_bench_default_output_name():
    import argparse

    from scl.bench import default_out

    args = argparse.Namespace(backbone="resnet18", image_size=32, batch_size=64, amp="bf16", channels_last=True,
                              compile=False)
    cpu = default_out({"gpu": None, "cpu_model": "AMD EPYC 9B14", "cpu_count": 2}, args)
    assert cpu == Path("results/bench/bench-cpu-amd-epyc-9b14-2c-resnet18-32-64-bf16-cl.json")
    gpu = default_out({"gpu": {"name": "NVIDIA H100 80GB HBM3"}}, args)
    assert gpu.name == "bench-nvidia-h100-80gb-hbm3-resnet18-32-64-bf16-cl.json"


def test_peak_table_is_keyed_by_device_name():
    from scl.bench import peak_tflops

    assert peak_tflops("NVIDIA H100 80GB HBM3")["bf16"] == pytest.approx(989.4)
    assert peak_tflops("NVIDIA H100 PCIe")["bf16"] == pytest.approx(756.0)
    assert peak_tflops("NVIDIA H200")["fp32"] == pytest.approx(66.9)
    assert peak_tflops("NVIDIA A100-SXM4-80GB")["tf32"] == pytest.approx(156.0)
    assert peak_tflops("NVIDIA GeForce RTX 4090") is None  # unknown: no share of peak


def test_bench_builds_its_steps_from_the_resolved_settings(tmp_path):
    import yaml

    from scl.bench import bench_settings
    from scl.cli import build_parser
    from scl.step import build_model, build_optimizer

    params = yaml.safe_load(Path("params.yaml").read_text())
    params["train"].update(lr=0.123, sgd_momentum=0.5, weight_decay=0.01, classifier_lr_mult=3.0, temperature=0.2)
    alt = tmp_path / "alt.yaml"
    alt.write_text(yaml.safe_dump(params))
    args = build_parser().parse_args(["bench", "--params", str(alt), "--backbone", "small_cnn", "--image-size", "16",
                                      "--channels", "1", "--num-classes", "4", "--memory-size", "64"])
    scl, moco = bench_settings(args, "scl"), bench_settings(args, "moco")
    assert (scl.train.lr, scl.train.temperature, scl.train.backbone, scl.train.memory_size) == (0.123, 0.2, "small_cnn", 64)
    assert (scl.dataset.num_classes, scl.dataset.image_size, scl.dataset.channels) == (4, 16, 1)
    assert moco.train.tasks == ("instance",) and moco.train.reweight is False
    opt = build_optimizer(build_model(scl), scl.train)
    assert [g["lr_mult"] for g in opt.param_groups] == [1.0, 3.0]
    assert {(g["momentum"], g["weight_decay"]) for g in opt.param_groups} == {(0.5, 0.01)}


def test_bench_batch_size_defaults_to_the_training_batch_size():
    from scl.bench import bench_settings
    from scl.cli import build_parser

    args = build_parser().parse_args(["bench", "--dataset", "fashion"])
    assert args.batch_size is None and args.amp == "auto" and args.channels_last == "auto"
    assert bench_settings(args, "scl").train.batch_size == resolve(load_params(ROOT / "params.yaml"), "fashion").train.batch_size
    assert build_parser().parse_args(["bench", "--channels-last"]).channels_last is True
    assert build_parser().parse_args(["bench", "--channels-last", "false"]).channels_last is False
