"""Tasks and objects end to end: the rows of `ray_core microbenchmark`.

Wraps ray_core._private.microbenchmark (it starts and stops its own 2-CPU head node);
"put gigabytes" stands beside a numpy copy measured in the same run, the other rows
beside the Ray 2.60 figures issue 6 measured on this machine (`make bench-vs-ray`
measures Ray itself in the same invocation).
"""
from ray_core._private import microbenchmark


def run():
    return microbenchmark.run(quick=True)
