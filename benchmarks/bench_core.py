"""Tasks and objects end to end: the rows of `ray_core microbenchmark`.

Wraps ray_core._private.microbenchmark (it starts and stops its own 2-CPU head node);
"put gigabytes" stands beside a numpy copy measured in the same run, the other rows
beside the Ray 2.60 figures issue 6 measured on this machine (`make bench-vs-ray`
measures Ray itself in the same invocation). benchmarks/run.py divides value by
reference, which reads backwards for latencies, so those rows name Ray's figure instead.
"""
from ray_core._private import microbenchmark


def run():
    rows = []
    for name, value, unit, reference, ref_unit in microbenchmark.run(quick=True):
        if unit == "ms" and reference:
            name = f"{name} (Ray 2.60: {reference} ms)"
            reference = 0.0
        rows.append((name, value, unit, reference, ref_unit))
    return rows
