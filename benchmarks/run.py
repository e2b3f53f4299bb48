"""`make bench`: run every `benchmarks/bench_*.py` and print one table.

Each module has `run()` returning rows `(name, value, unit, reference, ref_unit)`:
`reference` is a figure measured in the same run (a plain-Python or memcpy baseline),
so the ratio means something on a shared, noisy machine. Select modules with
`python -m benchmarks.run ids plasma`. Modules in ON_DEMAND take minutes and run only
when named (`python -m benchmarks.run soak`, `... scale`).
"""
import importlib
import pathlib
import sys
import traceback

ON_DEMAND = {"soak", "scale"}


def main(argv):
    names = argv or sorted(p.stem[len("bench_"):] for p in
                           pathlib.Path(__file__).parent.glob("bench_*.py")
                           if p.stem[len("bench_"):] not in ON_DEMAND)
    print(f"{'benchmark':58} {'value':>14} {'unit':12} {'reference':>14} {'ratio':>7}")
    failed = False
    for name in names:
        try:
            rows = importlib.import_module(f"benchmarks.bench_{name}").run()
        except Exception:
            failed = True
            print(f"{name}: FAILED\n{traceback.format_exc()}")
            continue
        for row_name, value, unit, reference, _ in rows:
            ratio = f"{value / reference:7.2f}" if reference else "      -"
            ref = f"{reference:14,.1f}" if reference else " " * 14
            print(f"{name + ': ' + row_name:58} {value:14,.1f} {unit:12} {ref} {ratio}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
