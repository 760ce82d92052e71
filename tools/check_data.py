#!/usr/bin/env python
"""Check a config's datasets against the official releases (``canu-check-data``, canu_plugin/cli/check_data.py)."""
import sys

from canu_plugin.cli.check_data import main

if __name__ == "__main__":
    sys.exit(main())
