#!/usr/bin/env python
"""Score a candidate synthetic testbed against docs/bench/testbed.md's criteria (canu_plugin/cli/testbed.py)."""
import sys

from canu_plugin.cli.testbed import main

if __name__ == "__main__":
    sys.exit(main())
