"""Verify Standard Webhooks v1a (ed25519) signatures with the PyPI `cryptography` package.

Written from the Standard Webhooks specification: the signed content is
"<webhook-id>.<webhook-timestamp>.<body>", the header holds space-separated "v1a,<base64>"
signatures, and a public key is "whpk_" + base64 of the raw 32-byte key.

Input (stdin): JSON {"public_key": "whpk_...", "requests": [{"headers": {...}, "body": "..."}]}
Output: one line per request, "ok" or "rejected: <reason>".
"""
import base64
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

job = json.load(sys.stdin)
key = Ed25519PublicKey.from_public_bytes(base64.b64decode(job["public_key"].removeprefix("whpk_")))
for request in job["requests"]:
    headers = request["headers"]
    content = f'{headers["webhook-id"]}.{headers["webhook-timestamp"]}.{request["body"]}'.encode()
    signatures = [s[len("v1a,"):] for s in headers["webhook-signature"].split(" ") if s.startswith("v1a,")]
    verdict = "rejected: no v1a signature"
    for signature in signatures:
        try:
            key.verify(base64.b64decode(signature), content)
            verdict = "ok"
            break
        except InvalidSignature:
            verdict = "rejected: no matching signature"
    print(verdict)
