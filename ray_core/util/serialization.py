"""Custom serializers for classes pickle cannot take as they are (Ray's
ray.util.serialization)."""


def register_serializer(cls: type, *, serializer, deserializer) -> None:
    """Pickle instances of `cls` (in this process) as deserializer(serializer(obj)), for
    classes pickle cannot take as they are; the deserializer is pickled with each value."""
    if not isinstance(cls, type):
        raise TypeError(f"register_serializer needs a class, got {cls!r}")
    for name, fn in (("serializer", serializer), ("deserializer", deserializer)):
        if not callable(fn):
            raise TypeError(f"register_serializer: {name} must be callable, got {fn!r}")
    from ray_core._private import serialization
    serialization.register_reducer(cls, serializer, deserializer)


def deregister_serializer(cls: type) -> None:
    """Forget what register_serializer said of `cls` (nothing happens if it said nothing)."""
    from ray_core._private import serialization
    serialization.deregister_reducer(cls)


__all__ = ["deregister_serializer", "register_serializer"]
