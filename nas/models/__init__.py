"""Model families. Each family is one module here that registers itself."""

from nas.models._family import Family, ParamFn, create_model, get_family, list_families, register_family

# Entries are imported explicitly so that a missing one fails loudly at import time.
from nas.models import dsconv as _dsconv  # noqa: E402,F401
from nas.models import timm_families as _timm_families  # noqa: E402,F401
from nas.models import dsconv3d as _dsconv3d  # noqa: E402,F401
from nas.models import resnet3d as _resnet3d  # noqa: E402,F401

__all__ = ["Family", "ParamFn", "create_model", "get_family", "list_families", "register_family"]
