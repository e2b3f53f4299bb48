"""Names of the resources a placement group's bundles turn into (Ray's scheme).

A committed bundle i of group G reserving {CPU: 2} makes its node hold CPU_group_i_G: 2
(this bundle) and CPU_group_G: 2 (any bundle of G on that node), plus a "bundle"
resource of BUNDLE_UNITS in both forms so a task asking for no resources can still be
steered into a bundle. A task of the group asks for the renamed resources instead of
the plain ones, so the ordinary scheduler can only place it where its bundle lives;
the core worker renames (with `in_bundle`), the raylet reserves (with `for_bundle`).
"""
import re
from typing import Dict, Mapping

BUNDLE = "bundle"
BUNDLE_UNITS = 1000.0
# What a task with no resources of its own asks of a bundle to be placed in one.
BUNDLE_SHARE = 0.001
_MARK = "_group_"


def indexed(name: str, group_hex: str, index: int) -> str:
    return f"{name}{_MARK}{index}_{group_hex}"


def wildcard(name: str, group_hex: str) -> str:
    return f"{name}{_MARK}{group_hex}"


# <base>_group_[<index>_]<group hex>: a user's own resource may contain "_group_" too.
_GROUP_NAME = re.compile(r"^(.+?)_group_(?:\d+_)?([0-9a-f]{36})$")


def is_group_resource(name: str) -> bool:
    return _GROUP_NAME.match(name) is not None


def group_of(name: str) -> str:
    """The group's hex id in a group resource's name; "" for any other name."""
    match = _GROUP_NAME.match(name)
    return match.group(2) if match else ""


def base_name(name: str) -> str:
    """CPU for CPU_group_0_<hex> and CPU_group_<hex>; the name itself otherwise."""
    match = _GROUP_NAME.match(name)
    return match.group(1) if match else name


def most_specific(names, kind: str):
    """Of the names standing for `kind` (GPU, GPU_group_<pg>, GPU_group_0_<pg>), the one
    that says most: the plain name, else a bundle's own, else the group-wide one (a
    task in bundle i holds both of the latter, over the same devices); None if none."""
    named = [name for name in names if base_name(name) == kind]
    if kind in named:
        return kind
    return max(named, key=len) if named else None


def for_bundle(resources: Mapping[str, float], group_hex: str,
               index: int) -> Dict[str, Dict[str, float]]:
    """What committing one bundle adds to its node: {"indexed"|"wildcard": {name: amount}}."""
    amounts = dict(resources)
    amounts[BUNDLE] = BUNDLE_UNITS
    return {"indexed": {indexed(n, group_hex, index): a for n, a in amounts.items()},
            "wildcard": {wildcard(n, group_hex): a for n, a in amounts.items()}}


def in_bundle(resources: Mapping[str, float], group_hex: str, index: int) -> Dict[str, float]:
    """A task's demand renamed into group `group_hex` (bundle `index`, or any for -1)."""
    amounts = {n: a for n, a in resources.items() if a > 0}
    if not amounts:
        amounts = {BUNDLE: BUNDLE_SHARE}
    out = {wildcard(n, group_hex): a for n, a in amounts.items()}
    if index >= 0:
        out.update({indexed(n, group_hex, index): a for n, a in amounts.items()})
    return out
