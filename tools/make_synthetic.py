#!/usr/bin/env python
"""Generate the built-in synthetic re-ID domains: ``canu-synth`` (canu_plugin/cli/synth.py)."""
import sys

from canu_plugin.cli.synth import main

if __name__ == "__main__":
    sys.exit(main())
