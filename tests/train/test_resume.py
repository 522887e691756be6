"""Training stopped at a rung and resumed from its state ends exactly where uninterrupted training ends."""

import torch
from conftest import TINY_XRAY

from nas.data import load_dataset
from nas.models import create_model
from nas.spaces import load_space
from nas.spec import Spec, TrainingSpec
from nas.tasks import get_task


def _spec() -> Spec:
    space = load_space("xray-tiny")
    baseline = space.baselines[0]
    return Spec(family=baseline.family, arch=baseline.arch, input_size=28, in_channels=1, num_classes=2,
                training=TrainingSpec(lr=0.003, weight_decay=1e-4, epochs=3, augment=0.3, batch_size=256))


def test_stop_and_resume_equals_one_run():
    # A slice of PneumoniaMNIST: exact resumption does not depend on how much data there is (the full set took 90 s).
    task, dataset, spec = get_task("xray"), load_dataset(TINY_XRAY), _spec()
    torch.manual_seed(0)
    straight = create_model(spec)
    resumed = create_model(spec)
    resumed.load_state_dict(straight.state_dict())
    full = task.train(straight, spec, dataset, seed=5, deadline=None)
    assert full["state"] is None  # nothing to resume: the schedule ran to its end
    first = task.train(resumed, spec, dataset, seed=5, deadline=None, stop_after=1)
    assert first["state"]["epoch"] == 1 and len(first["epoch_losses"]) == 1
    rest = task.train(resumed, spec, dataset, seed=5, deadline=None, resume=first["state"])
    assert first["epoch_losses"] + rest["epoch_losses"] == full["epoch_losses"]
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
