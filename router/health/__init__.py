"""The background health checker: probes targets, shares verdicts, marks targets in or out."""

from router.health.checker import HealthChecker

__all__ = ["HealthChecker"]
