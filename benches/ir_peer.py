"""The peers of the proxy whose instructions `budget.sh` counts: an origin that serves 1 KiB
that every cache may keep for an hour, and a keep-alive client that asks for it N times.

    python3 benches/ir_peer.py origin PORT
    python3 benches/ir_peer.py client PORT N     # exits 1 unless every answer is 200 + 1 KiB
"""
import http.client
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BODY = b"x" * 1024


class Origin(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("Cache-Control", "public, max-age=3600")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)


def client(port, n):
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                sys.exit(f"nothing listens on 127.0.0.1:{port}")
            time.sleep(0.2)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    bad = 0
    for _ in range(n):
        conn.request("GET", "/obj", headers={"Host": "bench.test"})
        response = conn.getresponse()
        body = response.read()
        bad += response.status != 200 or len(body) != len(BODY)
    if bad:
        sys.exit(f"{bad} of {n} answers were not a 200 with {len(BODY)} bytes")


if __name__ == "__main__":
    role, port = sys.argv[1], int(sys.argv[2])
    if role == "origin":
        ThreadingHTTPServer(("127.0.0.1", port), Origin).serve_forever()
    else:
        client(port, int(sys.argv[3]))
