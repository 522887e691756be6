"""The measurement agent (`nas agent`): serves this device's latency measurements over HTTP."""

from nas.agent.app import create_app

__all__ = ["create_app"]
