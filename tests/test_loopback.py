"""The loopback server the demo's stand-ins run on: quiet when a client drops its connection."""
import socket
import struct
import time
from urllib.parse import urlsplit

from dareg.loopback import QuietHandler, serve


class Boom(QuietHandler):
    def do_GET(self):  # noqa: N802
        if self.path == "/fail":
            raise RuntimeError("a handler bug")
        self.send_body(200, b"ok", "text/plain")


def reset_mid_request(base_url: str, path: str = "/") -> None:
    """Send half a request line, then close with RST (SO_LINGER 0), as a client giving up does."""
    url = urlsplit(base_url)
    with socket.create_connection((url.hostname, url.port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.sendall(f"GET {path}".encode())
        time.sleep(0.1)  # the handler is blocked reading the rest of the line when the RST lands


def test_a_dropped_connection_prints_nothing_but_a_handler_error_still_does(capfd):
    with serve(Boom) as base_url:
        reset_mid_request(base_url)
        time.sleep(0.2)
        assert capfd.readouterr().err == ""
        url = urlsplit(base_url)
        with socket.create_connection((url.hostname, url.port)) as sock:
            sock.sendall(b"GET /fail HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.recv(1)
        time.sleep(0.2)
        assert "RuntimeError: a handler bug" in capfd.readouterr().err
