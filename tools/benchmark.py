#!/usr/bin/env python
"""`make bench`: every method against fast-reid's baselines (``canu-bench``, canu_plugin/cli/bench.py)."""
import sys

from canu_plugin.cli.bench import main

if __name__ == "__main__":
    sys.exit(main(prog="python tools/benchmark.py"))
