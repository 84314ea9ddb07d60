"""The attendant's page over HTTPS/1.1 (`spbu attendant serve`), with the station's certificate.

Why not mosquitto's own `http_dir`: the libwebsockets in Debian's mosquitto 2.0.11 offers
HTTP/2 on a TLS listener and then answers static files over it with a protocol error, so a
phone's browser (which takes HTTP/2 when offered) cannot load the page from it. WebSockets
are not affected (a browser opens them over HTTP/1.1), so MQTT stays on mosquitto's TLS
WebSockets listener and only the static files come from here, offering HTTP/1.1 alone.

Read-only, static, no directory listings, nothing but GET and HEAD. The device key in the
enrolment link is in the URL's fragment, which a browser never sends to a server.
"""

from __future__ import annotations

import functools
import http.server
import logging
import ssl
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".wasm": "application/wasm", ".png": "image/png",
         ".svg": "image/svg+xml", ".json": "application/json"}


class _Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the page's files come over one connection
    server_version = "spbu-attendant"
    sys_version = ""

    def guess_type(self, path: Any) -> str:
        return TYPES.get(Path(str(path)).suffix.lower()) or super().guess_type(path)

    def list_directory(self, path: Any) -> None:
        self.send_error(404)  # no listings

    def end_headers(self) -> None:
        # The page changes with a software update; a stale cached app.js must not linger.
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Content-Type-Options", "nosniff")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("attendant page: " + format, *args)


class PageServer:
    def __init__(self, root: Path, certfile: Path, keyfile: Path, host: str = "0.0.0.0", port: int = 9444) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(certfile), str(keyfile))
        context.set_alpn_protocols(["http/1.1"])
        handler = functools.partial(_Handler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = int(self.httpd.server_address[1])
        self._thread: threading.Thread | None = None

    def start(self) -> PageServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="attendant-page", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=5)
        self.httpd.server_close()
