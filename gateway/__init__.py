"""The OpenAI-compatible chat gateway: routes each user to a version, serves, logs the turns.

Public face: :func:`create_gateway` over :class:`GatewayParts`, :class:`GatewaySettings`,
the backends (:mod:`gateway.backends`) and version sources (:mod:`gateway.routing`).
"""

from gateway.app import GatewayParts, create_gateway
from gateway.config import GatewaySettings
from gateway.keys import gateway_key
from gateway.routing import RemoteSource, RouterSource
from gateway.traffic import TrafficLog

__all__ = [
    "GatewayParts",
    "GatewaySettings",
    "RemoteSource",
    "RouterSource",
    "TrafficLog",
    "create_gateway",
    "gateway_key",
]
