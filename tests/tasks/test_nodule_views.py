"""Stage 2 scored over symmetric views of its patch: the views are the patch's symmetries, a score is their mean,
and a pipeline's stage 2 is measured at one batch of views per candidate."""

from __future__ import annotations

import numpy as np
import pytest

from nas.tasks.nodule.pipeline import over_views
from nas.tasks.nodule.volume import VIEWS, symmetric_views


def test_views_are_the_patch_mirrored_and_turned_a_patch_at_a_time():
    patches = np.random.default_rng(0).random((3, 1, 4, 5, 5)).astype(np.float32)
    views = symmetric_views(patches, len(VIEWS))
    assert views.shape == (3 * len(VIEWS), 1, 4, 5, 5)
    first = views[: len(VIEWS)]
    assert np.array_equal(first[0], patches[0])  # as is, then its symmetries, before the next patch's
    assert np.array_equal(first[1], patches[0][..., ::-1])
    assert np.array_equal(first[3], np.swapaxes(patches[0], -1, -2))
    assert np.array_equal(views[len(VIEWS)], patches[1])
    distinct = {v.tobytes() for v in first}
    assert len(distinct) == len(VIEWS)  # eight different views, none repeated
    assert all(np.isclose(v.sum(), patches[0].sum()) for v in first)  # the same voxels, moved


def test_score_is_the_mean_over_views():
    patches = np.random.default_rng(1).random((5, 1, 4, 5, 5)).astype(np.float32)
    # a model that looks only at the first row of the first slice: its views disagree, their mean is the score
    corner = lambda x: x[:, 0, 0, 0, :].mean(axis=1)  # noqa: E731
    for views in (1, 4, 8):
        expected = corner(symmetric_views(patches, views)).reshape(5, views).mean(axis=1)
        assert np.allclose(over_views(corner, views)(patches), expected)
    assert np.allclose(over_views(corner, 1)(patches), corner(patches))
    assert over_views(corner, 8)(patches[:0]).shape == (0,)


@pytest.mark.parametrize("views", [1, 4])
def test_stage_two_is_measured_at_a_batch_of_its_views(views):
    from nas.tasks import get_task
    from nas.tasks.nodule.space import NoduleSpec

    task = get_task("nodule")
    spec = {"family": "dsconv3d", "input_size": 16, "in_channels": 1, "num_classes": 2, "spatial_dims": 3,
            "arch": {"stem_width": 8, "stem_stride": 2, "stages": [], "activation": "relu", "dropout": 0.0},
            "training": {"lr": 0.003, "weight_decay": 0.0, "epochs": 1, "augment": 0.0}}
    screen = spec | {"family": "dsconv", "in_channels": 3, "spatial_dims": 2}
    pipeline = NoduleSpec.model_validate({"screen": screen, "classify": spec, "candidates": 8,
                                          "screen_threshold": 0.1, "views": views})
    candidate = task.candidate_of(pipeline.classify, pipeline.model_dump(mode="json"))
    assert [s.batch for s in candidate.stages][1] == views
    assert NoduleSpec.model_validate({k: v for k, v in pipeline.model_dump().items() if k != "views"}).views == 1
