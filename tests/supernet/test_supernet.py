"""The dsconv supernet: the sandwich step trains it, an extracted subnet is the supernet at that subnet, BatchNorm
recalibration touches only BatchNorm statistics, and an interrupted training resumes exactly."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from nas.models.complexity import count_params
from nas.spec import Spec
from nas.supernet import (
    Supernet, SupernetRange, SupernetRecipe, calibration_batches, checkpoint_epochs, load_supernet, recalibrate_bn,
    sandwich_step, train_supernet,
)

SPAN = SupernetRange(
    params={"stem_width": [4, 8], "stem_stride": [1, 2], "num_stages": [1, 2, 3], "stage_width": [4, 8, 12],
            "stage_depth": [1, 2], "stage_stride": [1, 2], "kernel_size": [3, 5], "se": [False, True],
            "activation": ["relu", "hardswish"], "dropout": [0.0, 0.2]},
    in_channels=1, num_classes=2, input_sizes=(12, 16))
TRAINING = {"lr": 0.003, "weight_decay": 0.0, "epochs": 1, "augment": 0.0}


def spec(arch: dict, size: int = 16) -> Spec:
    return Spec(family="dsconv", arch=arch, input_size=size, in_channels=1, num_classes=2, training=TRAINING)


def trained_net(steps: int = 2) -> Supernet:
    torch.manual_seed(0)
    net = Supernet(SPAN).train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=3e-3)
    x, y = torch.randn(8, 1, 16, 16), torch.tensor([0, 1] * 4)
    for s in range(steps):
        sandwich_step(net, x, y, optimizer, random.Random(s))
    return net.eval()


def test_sandwich_step_trains_largest_smallest_and_random_subnets():
    torch.manual_seed(0)
    net = Supernet(SPAN).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    optimizer = torch.optim.AdamW(net.parameters(), lr=3e-3)
    step = sandwich_step(net, torch.randn(8, 1, 16, 16), torch.tensor([0, 1] * 4), optimizer, random.Random(1))

    assert sorted(step.losses) == ["largest", "random", "smallest"] and len(step.losses["random"]) == 2
    assert all(torch.isfinite(torch.tensor(v)).all() for v in step.losses.values())
    largest, smallest = step.archs[0], step.archs[1]
    assert largest == SPAN.arch("largest") and smallest == SPAN.arch("smallest")
    assert largest["stem_width"] == 8 and largest["stem_stride"] == 1 and largest["se"] is True
    assert [(s["width"], s["depth"], s["kernel"], s["stride"]) for s in largest["stages"]] == [(12, 2, 5, 1)] * 3
    assert [(s["width"], s["depth"], s["kernel"], s["stride"]) for s in smallest["stages"]] == [(4, 1, 3, 2)]
    changed = [k for k, v in net.state_dict().items() if not torch.equal(v, before[k])]
    assert "stages.2.1.pw.weight" in changed  # the largest subnet's deepest block learned
    assert "head.weight" in changed and "stem.0.weight" in changed
    net.eval()
    with torch.no_grad():
        assert net(torch.randn(3, 1, 16, 16), largest).shape == (3, 2)
        assert net(torch.randn(3, 1, 12, 12), smallest).shape == (3, 2)
    assert count_params(net.extract(spec(largest))) > 5 * count_params(net.extract(spec(smallest)))


@pytest.mark.parametrize("pick", ["largest", "smallest", "random"])
def test_an_extracted_subnet_computes_what_the_supernet_does_at_that_subnet(pick):
    net = trained_net()  # trained, so BatchNorm statistics and every weight are non-trivial
    rng = random.Random(7)
    for _ in range(5 if pick == "random" else 1):
        arch = SPAN.arch(pick, rng)
        model = net.extract(spec(arch))
        assert type(model).__name__ == "DSConvNet"  # the ordinary builder's model: export and pruning apply
        x = torch.randn(4, 1, 16, 16)
        with torch.no_grad():
            torch.testing.assert_close(model(x), net(x, arch), rtol=0, atol=1e-6)


def test_a_small_kernel_is_the_centre_of_the_large_one_and_widths_are_leading_slices():
    net = trained_net(1)
    arch = SPAN.arch("largest") | {"stem_width": 4}
    arch["stages"] = [{"width": 8, "depth": 2, "stride": 1, "kernel": 3}]
    model = net.extract(spec(arch))
    torch.testing.assert_close(model.blocks[1].dw.weight, net.stages[0][1].dw.weight[:8, :, 1:4, 1:4], rtol=0, atol=0)
    torch.testing.assert_close(model.blocks[0].pw.weight, net.stages[0][0].pw.weight[:8, :4], rtol=0, atol=0)
    torch.testing.assert_close(model.head.weight, net.head.weight[:, :8], rtol=0, atol=0)


def test_bn_recalibration_changes_only_batchnorm_statistics():
    net = trained_net()
    model = net.extract(spec(SPAN.arch("random", random.Random(3))))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = torch.randn(64, 1, 16, 16) * 2 + 1
    batches = calibration_batches(images, batch_size=16, count=4)
    recalibrate_bn(model, batches)

    after = model.state_dict()
    bn_stats = {k for k in after if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    assert all(torch.equal(after[k], before[k]) for k in after if k not in bn_stats)  # weights untouched
    assert all(not torch.equal(after[k], before[k]) for k in bn_stats if k.endswith("running_mean"))
    assert not model.training and all(not m.training for m in model.modules())
    assert all(m.momentum == 0.1 for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    # An exact average over equal batches: the stem's statistics are those of all calibration images at once.
    stem = model.stem[0](torch.cat(batches))
    torch.testing.assert_close(model.stem[1].running_mean, stem.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)


def test_training_checkpoints_each_epoch_and_an_interrupted_run_resumes_exactly(tmp_path):
    images, labels = torch.randn(24, 1, 16, 16), torch.tensor([0, 1] * 12)
    recipe = SupernetRecipe(epochs=2, lr=3e-3, weight_decay=1e-4, augment=0.2, batch_size=8, seed=0)
    torch.manual_seed(0)  # the same initial weights for both runs
    straight = Supernet(SPAN)
    log = train_supernet(straight, images, labels, recipe, checkpoint=tmp_path / "a.pt")
    assert len(log.epoch_losses) == 2 and checkpoint_epochs(tmp_path / "a.pt") == 2

    def stop_after_first(epoch: int, loss: float) -> None:
        raise KeyboardInterrupt  # killed once epoch 1 is on disk

    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        train_supernet(Supernet(SPAN), images, labels, recipe, checkpoint=tmp_path / "b.pt",
                       on_epoch=stop_after_first)
    assert checkpoint_epochs(tmp_path / "b.pt") == 1
    resumed = Supernet(SPAN)
    log = train_supernet(resumed, images, labels, recipe, checkpoint=tmp_path / "b.pt")
    assert log.resumed_from == 1 and len(log.epoch_losses) == 2
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    loaded = load_supernet(tmp_path / "b.pt", SPAN, recipe)
    torch.testing.assert_close(loaded.head.weight, straight.head.weight)
