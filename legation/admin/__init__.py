"""HTTP admin API: probes, Prometheus metrics and debug views."""

from legation.admin.server import Admin, AdminServer, AdminView, config_dump

__all__ = ["Admin", "AdminServer", "AdminView", "config_dump"]
