"""Signs webhook requests the way Twilio does, with Twilio's own helper library.

The webhook tests (tests/common/twilio.rs) run this with the interpreter of .twilio-venv/
(scripts/install-twilio-helper.sh), so that every signature they send comes from an
implementation independent of optout's: `twilio.request_validator.RequestValidator`.

stdin: a JSON array of requests, each
  {"token": str, "url": str, "algorithm": "HMAC_SHA1" | "HMAC_SHA256" (optional),
   "params": [[name, value], ...]   # a form: every POST parameter, repeats kept
   or "body": str}                  # a JSON body: bodySHA256 is appended to the URL, as
                                    # Twilio does, and the URL alone is signed
stdout: a JSON array of {"url": the URL signed, "signature": X-Twilio-Signature,
  "valid": whether RequestValidator.validate accepts the request it describes}.
"""

import json
import sys

import twilio
from twilio.request_validator import RequestValidator


class MultiDict:
    """The interface RequestValidator reads repeated parameters through (Flask's getall)."""

    def __init__(self, pairs):
        self.pairs = pairs

    def __iter__(self):
        return iter([name for name, _ in self.pairs])

    def __bool__(self):
        return bool(self.pairs)

    def getall(self, name):
        return [value for n, value in self.pairs if n == name]


def sign(request):
    validator = RequestValidator(request["token"])
    algorithm = request.get("algorithm")
    url = request["url"]
    if "body" in request:
        body = request["body"]
        separator = "&" if "?" in url else "?"
        url = f"{url}{separator}bodySHA256={validator.compute_hash(body)}"
        signature = validator.compute_signature(url, {}, algorithm)
        valid = validator.validate(url, body, signature, algorithm)
    else:
        params = MultiDict([(n, v) for n, v in request.get("params", [])])
        signature = validator.compute_signature(url, params, algorithm)
        valid = validator.validate(url, params, signature, algorithm)
    return {"url": url, "signature": signature, "valid": valid}


def main():
    requests = json.load(sys.stdin)
    json.dump([sign(r) for r in requests], sys.stdout)
    sys.stdout.write("\n")
    print(f"signed {len(requests)} with twilio {twilio.__version__}", file=sys.stderr)


if __name__ == "__main__":
    main()
