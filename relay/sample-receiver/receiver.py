"""A sample webhook receiver: verifies each request with the official Standard Webhooks library
and prints the event. Used by the demo (scripts/demo.sh) and docker-compose.yml.

    WEBHOOK_SECRET=whsec_... [WEBHOOK_WEB_ROOT=dir] python receiver.py [PORT]

Answers 204 to a verified request, 401 to one that fails verification. With WEBHOOK_WEB_ROOT,
GET serves the files in that directory (by name only), so webhooks.verify() can find a
webhook's verification file there.
"""
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

_print_lock = threading.Lock()


def say(line):
    # requests are handled on several threads: one whole line at a time
    with _print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
        secrets = os.environ["WEBHOOK_SECRET"].split()
        verified = any(self._verifies(secret, body) for secret in secrets)
        if not verified:
            say(f"REJECTED {self.path}: signature did not verify")
            self.send_response(401)
            self.end_headers()
            return
        event = json.loads(body)
        say(
            f"verified {self.headers['webhook-id']} {event['type']}: "
            f"{json.dumps(event['data'], ensure_ascii=False)}"
        )
        self.send_response(204)
        self.end_headers()

    def do_GET(self):
        root = os.environ.get("WEBHOOK_WEB_ROOT")
        name = os.path.basename(self.path.split("?", 1)[0])
        path = os.path.join(root, name) if root and name else None
        if path is None or not os.path.isfile(path):
            self.send_response(404)
            self.end_headers()
            return
        with open(path, "rb") as file:
            content = file.read()
        say(f"served {self.path}")
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def _verifies(self, secret, body):
        try:
            Webhook(secret).verify(body, dict(self.headers))
            return True
        except WebhookVerificationError:
            return False

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    say(f"sample receiver listening on :{port}")
    server.serve_forever()
