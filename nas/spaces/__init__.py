"""Search spaces: YAML declarations of what a study may sample.

Validating a space needs the model registry, hence torch; listing the spaces does not (`nas.spaces.catalog`), so
the validating names below load on first use and `nas spaces` starts in well under two seconds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nas.spaces._fidelity import Fidelity

if TYPE_CHECKING:
    from nas.spaces._space import (
        TRAINING_DEFAULTS, Baseline, Distribution, SearchSpace, StartPoint, baseline_params, check_start_point, draw,
        for_data, for_precisions, list_spaces, load_space, sample_compression, sample_spec,
    )

__all__ = ["TRAINING_DEFAULTS", "Baseline", "Distribution", "Fidelity", "SearchSpace", "StartPoint", "baseline_params",
           "check_start_point", "draw", "for_data", "for_precisions", "list_spaces", "load_space",
           "sample_compression", "sample_spec"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from nas.spaces import _space

        return getattr(_space, name)
    raise AttributeError(f"module 'nas.spaces' has no attribute {name!r}")
