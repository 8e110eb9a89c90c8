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
        # json_parse=False: form and query requests are signed too, and are not JSON
        verifier.verify(request["body"], request["headers"], json_parse=False)
        print("ok")
    except WebhookVerificationError as error:
        print(f"rejected: {error}")
