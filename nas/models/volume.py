"""What a 3D family's block in a search space declares beside its architecture (`PATCH_PARAMS`).

A volume family says so itself (`Family.spatial_dims`), and its specs carry it (`Spec.spatial_dims`), so pruning,
export and measurement, which read `spec.input_shape`, work on 3D models unchanged.
"""

from __future__ import annotations

__all__ = ["PATCH_PARAMS"]

PATCH_PARAMS = ("patch_size", "candidates", "screen_threshold", "views")
"""Declared beside every 3D family's architecture in a space: the patch edge the second stage classifies, how
many first-stage candidates, above what first-stage score, it is given, and in how many symmetric views of each it
scores them (these set how often the model runs)."""
