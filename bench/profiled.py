"""``python -m bench.profiled [--profile FILE] -- ARGS``: the ``stateful-route`` command with ARGS,
optionally under cProfile (the event loop's thread; the stats written to FILE when the command
ends, as the operator does on SIGTERM). Only the benchmarks use it."""

from __future__ import annotations

import cProfile
import sys

from stateful_route.cli.app import main as command


def main(argv: list[str]) -> None:
    profile, args = _split(argv)
    sys.argv = ["stateful-route", *args]
    if profile is None:
        command()
        return
    profiler = cProfile.Profile()
    try:
        profiler.runcall(command)
    finally:
        profiler.dump_stats(profile)


def _split(argv: list[str]) -> tuple[str | None, list[str]]:
    """The profile's file (None: not profiled) and the command's arguments."""
    at = argv.index("--")
    options, args = argv[:at], argv[at + 1 :]
    profile = options[options.index("--profile") + 1] if "--profile" in options else None
    return profile, args


if __name__ == "__main__":
    main(sys.argv[1:])
