#!/usr/bin/env python3
"""Run a module under cProfile with the main thread's CPU time as its clock.

    python tools/cpu_profile.py OUT.prof -m MODULE [ARGS...]

cProfile's default clock is the wall clock: on a loaded machine a function that was merely
preempted looks expensive. ``time.thread_time`` counts only the CPU the profiled (main)
thread used, so the figures say where that thread's CPU went (worker threads, such as the
disk writer's hashing and writes, are not in them). tools/bench_swarm.py ``--profile``
uses this for its first leecher. The stats are saved when the module exits (sys.exit too).
"""

from __future__ import annotations

import cProfile
import os
import runpy
import sys
import time


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "-m":
        sys.stderr.write("usage: cpu_profile.py OUT.prof -m MODULE [ARGS...]\n")
        return 2
    out, module = argv[0], argv[2]
    sys.argv = [module, *argv[3:]]
    # As ``python -m`` does: the current folder first on the path (not this script's), so
    # a run from a git worktree profiles that worktree's package, not the installed one.
    sys.path[0] = os.getcwd()
    profile = cProfile.Profile(time.thread_time)
    code = 0
    profile.enable()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        profile.disable()
        profile.dump_stats(out)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
