"""A site backend's webhook receiver for the tests: verifies every
request with the Standard Webhooks reference library and appends what it
got to a JSON-lines file, one line per request:
{"ok": true, "id", "timestamp", "body"} or {"ok": false, "why"}.

usage: receiver.py PORT SECRET_FILE OUT_FILE
Answers 204 to a verified request, 400 to any other.
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

port, secret_file, out_file = int(sys.argv[1]), sys.argv[2], sys.argv[3]
with open(secret_file) as f:
    hook = Webhook(f.read().strip())


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            payload = hook.verify(body, headers)
            line = {"ok": True, "id": headers["webhook-id"],
                    "timestamp": headers["webhook-timestamp"], "body": payload}
            status = 204
        except (WebhookVerificationError, KeyError, ValueError) as e:
            line = {"ok": False, "why": repr(e)}
            status = 400
        with open(out_file, "a") as f:
            f.write(json.dumps(line) + "\n")
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
print("ready", flush=True)
server.serve_forever()
