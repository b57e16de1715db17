"""Fuzz every reader with N damaged inputs each (default 10,000) and print what happened.

    python benchmarks/fuzz.py [--per-reader 10000] [--readers auto_gptq,dense]

Outcomes: ok (read fine), refused (a one-line repack error), unexpected (anything else: a bug;
reproduce with tests.fuzzing.run_case(reader, seed, ...)). Exit status 1 if any is unexpected.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fuzzing import SEEDS, make_seeds, run_case  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-reader", type=int, default=10_000)
    ap.add_argument("--readers", default=",".join(SEEDS))
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="repack-fuzz-"))
    seeds = make_seeds(root)
    total_bad = 0
    print(f"{'reader':<20} {'inputs':>7} {'ok':>6} {'refused':>8} {'unexpected':>10} {'seconds':>8}")
    for reader in args.readers.split(","):
        counts, t0 = Counter(), time.time()
        for seed in range(args.per_reader):
            try:
                counts["ok" if run_case(reader, seed, seeds[reader], root) == "ok" else "refused"] += 1
            except Exception:  # noqa: BLE001 - what the fuzzer is looking for
                counts["unexpected"] += 1
                if counts["unexpected"] <= 3:
                    print(f"  {reader} seed {seed}:\n{traceback.format_exc(limit=3)}", file=sys.stderr)
        total_bad += counts["unexpected"]
        print(f"{reader:<20} {args.per_reader:>7} {counts['ok']:>6} {counts['refused']:>8} {counts['unexpected']:>10} "
              f"{time.time() - t0:>8.1f}", flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MiB")
    sys.exit(1 if total_bad else 0)


if __name__ == "__main__":
    main()
