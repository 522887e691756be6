"""Search spaces: YAML declarations of what a study may sample."""

from nas.spaces._space import (
    Baseline, Distribution, SearchSpace, baseline_params, for_data, for_precisions, list_spaces, load_space,
    sample_spec,
)

__all__ = ["Baseline", "Distribution", "SearchSpace", "baseline_params", "for_data", "for_precisions",
           "list_spaces", "load_space", "sample_spec"]
