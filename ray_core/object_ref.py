"""ObjectRef: a handle to a value that exists, or will, somewhere in the cluster.

A ref is its ObjectID plus the address of its owner (the worker that created it or
submitted the task that makes it). Creating a ref adds a local reference in this
process's reference counter, dropping it removes one; when no ref, pending task or
nested value holds an object, its owner frees it. Pickling a ref (inside an argument,
a put value, a return value) records it as nested, and unpickling makes a borrowed ref
that resolves through the owner. The class is compiled (`_private/_object_ref.pyx`):
refs are made, hashed and dropped by the thousand on the hot paths.
"""
from ray_core._private._object_ref import ObjectRef as ObjectRef  # noqa: F401
from ray_core._private._object_ref import _rebuild_ref  # noqa: F401

__all__ = ["ObjectRef"]
