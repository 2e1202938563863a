#!/usr/bin/env python3
"""The replay yardstick of scripts/bench-e2e.sh: a Python json.loads loop over a file of one
JSON per line (no store at all). Prints the number of lines parsed.

    python3 scripts/bench/json_loop.py mix.jsonl
"""
import json
import sys

n = 0
with open(sys.argv[1], "rb") as f:
    for line in f:
        if line.strip():
            json.loads(line)
            n += 1
print(n)
