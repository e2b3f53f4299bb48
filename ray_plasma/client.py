"""The plasma client the rest of ray_core imports (implemented in _client.pyx)."""
from ray_plasma._client import PlasmaClient as PlasmaClient
from ray_plasma._client import PlasmaObject as PlasmaObject
from ray_plasma.protocol import ObjectInfo as ObjectInfo
from ray_plasma.subscription import PlasmaSubscription as PlasmaSubscription

__all__ = ["PlasmaClient", "PlasmaObject", "ObjectInfo", "PlasmaSubscription"]
