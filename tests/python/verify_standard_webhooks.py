"""Verify recorded deliveries with the official Standard Webhooks library, unchanged.

Input (stdin): JSON {"secret": "whsec_...", "requests": [{"headers": {...}, "body": "..."}]}
Output: one line per request, "ok" or "rejected: <reason>".
"""
import json
import sys

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

job = json.load(sys.stdin)
verifier = Webhook(job["secret"])
for request in job["requests"]:
    try:
        verifier.verify(request["body"], request["headers"])
        print("ok")
    except WebhookVerificationError as error:
        print(f"rejected: {error}")
