"""``python -m kiok.testing.sim --seeds 0-199`` (or ``--seed 17 -v``): run simulated worlds
and report the seeds whose invariants failed, each with the command that replays it."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time

from kiok.testing.sim.scenario import Scenario
from kiok.testing.sim.world import simulate


def _seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def _virtual_time(record: logging.LogRecord) -> bool:
    """Stamp each log line with the simulated world's time (``vt``)."""
    try:
        record.vt = asyncio.get_running_loop().time()
    except RuntimeError:
        record.vt = -1.0
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kiok.testing.sim", description=__doc__)
    p.add_argument("--seed", type=int, help="run one seed")
    p.add_argument("--seeds", default="0-99", help="seeds to run, e.g. 0-999 or 3,17,40-50")
    p.add_argument("--runs", type=int, default=12, help="runs triggered per world")
    p.add_argument("--window", type=float, default=40.0, help="virtual seconds of faults")
    p.add_argument(
        "--actions",
        type=float,
        default=0.0,
        metavar="S",
        help="one user action (pause, maintenance, re-run, burst, refusing worker) every S virtual s",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="print the trace of each world")
    args = p.parse_args(argv)
    handler = logging.StreamHandler()
    handler.addFilter(_virtual_time)
    handler.setFormatter(logging.Formatter("%(vt)9.3f %(name)s %(message)s"))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.CRITICAL, handlers=[handler])
    seeds = [args.seed] if args.seed is not None else _seeds(args.seeds)
    failed = 0
    started = time.monotonic()
    for seed in seeds:
        outcome = simulate(
            Scenario(seed=seed, runs=args.runs, window_s=args.window, actions_every_s=args.actions)
        )
        if args.verbose:
            print("\n".join(outcome.trace))
            print("faults:", *outcome.faults, sep="\n  ")
        if not outcome.ok:
            failed += 1
            print(f"seed {seed}: {len(outcome.violations)} violation(s)")
            for v in outcome.violations[:10]:
                print(f"  {v}")
            print(f"  replay: {outcome.replay_command()}")
        elif args.verbose or len(seeds) == 1:
            print(
                f"seed {seed}: ok ({outcome.runs} runs, {outcome.execution_count} executions, "
                f"{len(outcome.faults)} faults, {outcome.virtual_s:.0f} virtual s)"
            )
    print(f"{len(seeds) - failed} of {len(seeds)} seeds passed in {time.monotonic() - started:.1f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
