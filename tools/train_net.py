#!/usr/bin/env python
"""Train or evaluate a fast-reid model with canu-plugin's methods: ``canu-train`` (canu_plugin/cli/train.py)."""
import sys

from canu_plugin.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
