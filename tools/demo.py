#!/usr/bin/env python
"""`make demo`: the short benchmark on the built-in synthetic data, on CPU (canu_plugin/cli/bench.py:
``demo_main``; ``tools/benchmark.py`` with five methods and seed 0)."""
import sys

from canu_plugin.cli.bench import demo_main

if __name__ == "__main__":
    sys.exit(demo_main())
