#!/usr/bin/env python
"""A trained canu-plugin model as a plain fast-reid Baseline: ``canu-export`` (canu_plugin/cli/export.py)."""
import sys

from canu_plugin.cli.export import main

if __name__ == "__main__":
    sys.exit(main())
