"""On-the-fly augmentation: volumes get a random symmetry each, images the affine, and strength 0 leaves both."""

import itertools

import torch

from nas.train.loop import augment


def _symmetries(volume: torch.Tensor) -> list[torch.Tensor]:
    """The 16 symmetries of a (C, D, H, W) box with a square section: flips of each axis, with or without an
    in-plane transpose."""
    out = []
    for transpose in (False, True):
        turned = volume.transpose(2, 3) if transpose else volume
        for flips in itertools.product((False, True), repeat=3):
            axes = [axis for axis, flip in zip((1, 2, 3), flips) if flip]
            out.append(turned.flip(axes) if axes else turned)
    return out


def test_each_volume_becomes_one_of_its_symmetries_and_all_occur():
    volumes = torch.rand(64, 1, 3, 4, 4, generator=torch.Generator().manual_seed(1))  # no two voxels equal
    out = augment(volumes, 0.3, torch.Generator().manual_seed(0))
    assert out.shape == volumes.shape
    seen = set()
    for before, after in zip(volumes, out):
        matches = [k for k, s in enumerate(_symmetries(before)) if torch.equal(s, after)]
        assert matches, "a volume came out as something other than a symmetry of itself"
        seen.add(matches[0])
    assert len(seen) >= 12  # 64 draws over 16 symmetries: each drawn, not one fixed choice for the batch


def test_strength_zero_leaves_volumes_and_images_alone():
    generator = torch.Generator().manual_seed(0)
    volumes, images = torch.rand(4, 1, 3, 4, 4), torch.rand(4, 1, 8, 8)
    assert torch.equal(augment(volumes, 0.0, generator), volumes)
    assert torch.equal(augment(images, 0.0, generator), images)
    assert not torch.equal(augment(images, 0.5, generator), images)  # images keep the affine
