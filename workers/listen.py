"""`ecwid-relay listen`: a local callback endpoint that prints what the relay sends.

For trying the relay out (see the README walk-through). With `--key`, it checks
`Elements-Webhook-Signature` and says whether it matches.
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from workers.signatures import elements_signature_matches


def serve(host: str, port: int, key: str | None) -> int:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            signature = self.headers.get("Elements-Webhook-Signature")
            verdict = "unsigned"
            if signature and key:
                verdict = "valid" if elements_signature_matches(signature, key, body) else "INVALID"
            elif signature:
                verdict = "signed (pass --key to check)"
            print(f"--- {self.headers.get('Elements-Webhook-Id')} signature: {verdict}", flush=True)
            try:
                print(json.dumps(json.loads(body), indent=2), flush=True)
            except ValueError:
                print(body.decode("utf-8", "replace"), flush=True)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    print(f"listening on http://{host}:{port}/ (Ctrl-C to stop)", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
