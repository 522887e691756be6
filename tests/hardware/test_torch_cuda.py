"""The torch-cuda backend and fp16 scoring: run on a CUDA machine, and say why not elsewhere."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import QUICK_PROFILE
from nas.errors import ConfigError
from nas.export import half_precision_predictor
from nas.hardware import load_profile, open_target
from nas.hardware.torch_cuda import TorchCUDA
from nas.models import create_model
from nas.spec import Spec, TrainingSpec

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
RECIPE = TrainingSpec(lr=1e-3, weight_decay=0.0, epochs=1, augment=0.0)
DSCONV = Spec(family="dsconv", input_size=28, in_channels=1, num_classes=2, training=RECIPE,
              arch={"stem_width": 16, "stem_stride": 1, "se": True, "activation": "hardswish", "dropout": 0.0,
                    "stages": [{"width": 32, "depth": 1, "stride": 2, "kernel": 3},
                               {"width": 64, "depth": 1, "stride": 2, "kernel": 3}]})
RESNET_224 = Spec(family="resnet", arch={"variant": "resnet18"}, input_size=224, in_channels=1, num_classes=2,
                  training=RECIPE)


def quick_gpu_profile():
    """The nvidia-gpu profile with the quick protocol of the tests' CPU profile."""
    return load_profile("nvidia-gpu").model_copy(update={"protocol": load_profile(str(QUICK_PROFILE)).protocol})


@pytest.mark.skipif(CUDA, reason="this machine has CUDA")
def test_without_cuda_the_gpu_profile_says_why_before_any_work():
    with pytest.raises(ConfigError, match="PyTorch sees no CUDA device on this machine. Run the search on the machine"):
        open_target(load_profile("nvidia-gpu"))


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_a_model_is_timed_on_the_gpu_with_its_provenance(precision, tmp_path):
    profile = quick_gpu_profile()
    m = TorchCUDA().measure(tmp_path / "unused.onnx", profile=profile, precision=precision,
                            input_shape=DSCONV.input_shape, model=create_model(DSCONV))
    assert m.backend == "torch-cuda" and m.method == "measured" and m.precision == precision
    assert m.device == torch.cuda.get_device_name() and "CUDA graph" in m.runtime_version
    assert m.runs >= profile.protocol.min_runs and 0 < m.p50_ms <= m.p95_ms <= m.p99_ms
    assert m.throughput_ips and m.throughput_ips > 0 and m.peak_memory_mb > 0


@pytest.mark.gpu
@needs_cuda
def test_fp16_gives_more_throughput_than_fp32_on_a_large_model(tmp_path):
    profile = quick_gpu_profile()
    model = create_model(RESNET_224)
    fp32, fp16 = (TorchCUDA().measure(tmp_path / "unused.onnx", profile=profile, precision=p,
                                      input_shape=RESNET_224.input_shape, model=model) for p in ("fp32", "fp16"))
    assert fp16.throughput_ips > 1.2 * fp32.throughput_ips, (fp16.throughput_ips, fp32.throughput_ips)


def _fp16_and_fp32_logits(count: int) -> tuple[np.ndarray, np.ndarray]:
    torch.manual_seed(0)
    model = create_model(DSCONV).eval()
    images = torch.randn(count, *DSCONV.input_shape).numpy()
    with torch.no_grad():
        expected = model(torch.from_numpy(images)).numpy()
    return half_precision_predictor(model)(images), expected


@pytest.mark.gpu
@needs_cuda
def test_fp16_scoring_runs_half_precision_on_the_gpu():
    got, expected = _fp16_and_fp32_logits(64)
    assert got.dtype == np.float32 and got.shape == expected.shape
    assert 0 < np.abs(got - expected).max() < 2e-2  # fp16 rounding shows, and stays small


def test_fp16_scoring_works_without_a_gpu_too():
    got, expected = _fp16_and_fp32_logits(8)
    assert np.abs(got - expected).max() < 2e-2


@pytest.mark.gpu
@pytest.mark.slow
@needs_cuda
def test_a_search_on_the_gpu_profile_measures_and_scores_fp16_candidates(tmp_path):
    import json

    import yaml

    from conftest import FIXTURES
    from nas.search.final import finalize
    from nas.search.runner import SearchConfig, prepare, run_search

    profile = yaml.safe_load((load_profile("nvidia-gpu").path).read_text())
    profile["protocol"] = load_profile(str(QUICK_PROFILE)).protocol.model_dump()
    (tmp_path / "gpu-quick.yaml").write_text(yaml.safe_dump({**profile, "name": "gpu-quick"}))
    space = yaml.safe_load((FIXTURES / "xray-tiny-compress.yaml").read_text())
    space["compression"]["quant"] = {"choices": ["fp32", "fp16", "int8"]}  # int8 is dropped: not on this profile
    (tmp_path / "space.yaml").write_text(yaml.safe_dump({**space, "name": "gpu-space"}))
    config = SearchConfig(space=str(tmp_path / "space.yaml"), hardware=str(tmp_path / "gpu-quick.yaml"), study="g",
                          results=tmp_path / "results", trials=2, epochs=1, progress=False, baselines=False)
    run = prepare(config)
    run.study.enqueue_trial({"family": "dsconv", "prune_ratio": 0.5, "distill": False, "quant": "fp16"})
    run.study.enqueue_trial({"family": "mobilenetv3", "prune_ratio": 0.0, "distill": False, "quant": "fp32"})
    run_search(config, run)
    doc = finalize(run, keep_artifacts="all")
    r = json.loads((run.context.trial_dir(0) / "result.json").read_text())
    assert r["measurement"]["backend"] == "torch-cuda" and r["measurement"]["precision"] == "fp16"
    assert set(r["latency_by_precision"]) == {"fp32", "fp16"}
    assert r["metrics"]["val"] != r["float_metrics"]["val"]  # scored in half precision, not assumed equal
    assert abs(r["metrics"]["val"]["auc"] - r["float_metrics"]["val"]["auc"]) < 0.01
    assert r["train_log"]["device"] == "cuda"  # --train-device auto trains where the GPU is
    assert all(m["latency"]["backend"] == "torch-cuda" for m in doc["members"])
    assert all(m["metrics"]["test"]["auc"] > 0.5 for m in doc["members"])


@pytest.mark.gpu
@needs_cuda
def test_training_on_the_gpu_matches_training_on_the_cpu_and_hands_back_a_cpu_model():
    import copy

    from nas.train import train_classifier

    torch.manual_seed(0)
    images = torch.randn(512, *DSCONV.input_shape)
    labels = (images[:, :, :14].mean(dim=(1, 2, 3)) > images[:, :, 14:].mean(dim=(1, 2, 3))).long()
    model = create_model(DSCONV)
    recipe = RECIPE.model_copy(update={"epochs": 4, "lr": 3e-3, "batch_size": 64})
    on_cpu, on_gpu = copy.deepcopy(model), copy.deepcopy(model)
    cpu_log = train_classifier(on_cpu, images, labels, recipe, seed=0, device="cpu")
    gpu_log = train_classifier(on_gpu, images, labels, recipe, seed=0, device="cuda")
    assert gpu_log.epoch_losses[-1] < gpu_log.epoch_losses[0]
    # Same seed, same batches, same augmentation: the two devices learn the same thing up to float rounding.
    assert np.allclose(gpu_log.epoch_losses, cpu_log.epoch_losses, rtol=0.05), (gpu_log, cpu_log)
    assert all(p.device.type == "cpu" for p in on_gpu.parameters())
