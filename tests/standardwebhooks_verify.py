"""Verifies webhook requests with the Standard Webhooks reference library (PyPI
`standardwebhooks`), an implementation independent of optout's. Reads one JSON object on
stdin: {"secret": "whsec_...", "requests": [{"headers": {...}, "body": "..."}]}; prints a JSON
list with, per request, the verified payload or {"error": "..."}."""
import json
import sys

from standardwebhooks.webhooks import Webhook

job = json.load(sys.stdin)
hook = Webhook(job["secret"])
out = []
for r in job["requests"]:
    try:
        out.append(hook.verify(r["body"], r["headers"]))
    except Exception as e:  # noqa: BLE001 - every failure is reported, not raised
        out.append({"error": f"{type(e).__name__}: {e}"})
json.dump(out, sys.stdout)
