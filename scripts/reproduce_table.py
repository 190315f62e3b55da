#!/usr/bin/env python
"""Regenerates a paper table: see normexp/reproduce.py (also installed as ``normexp-reproduce``)."""
import sys

from normexp.reproduce import main

if __name__ == "__main__":
    sys.exit(main())
