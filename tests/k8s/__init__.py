"""Test helpers: an emulated Kubernetes API server (`apiserver.ApiServer`) and
builders of realistic cluster objects (`objects`). Importable as `k8s` once
`tests/` is on sys.path (see tests/unit/kubernetes/conftest.py)."""

from .apiserver import ApiServer
from .http import Request

__all__ = ["ApiServer", "Request"]
