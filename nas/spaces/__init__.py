"""Search spaces: YAML declarations of what a study may sample."""

from nas.spaces._fidelity import Fidelity
from nas.spaces._space import (
    TRAINING_DEFAULTS, Baseline, Distribution, SearchSpace, baseline_params, draw, for_data, for_precisions,
    list_spaces, load_space, sample_compression, sample_spec,
)

__all__ = ["TRAINING_DEFAULTS", "Baseline", "Distribution", "Fidelity", "SearchSpace", "baseline_params", "draw", "for_data",
           "for_precisions", "list_spaces", "load_space", "sample_compression", "sample_spec"]
