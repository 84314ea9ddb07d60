"""The station's web pages over HTTPS/1.1 (`spbu attendant serve`), with the station's certificate:
the attendant's app at `/` and the manager's dashboard at `/dashboard/`.

Why not mosquitto's own `http_dir`: the libwebsockets in Debian's mosquitto 2.0.11 offers
HTTP/2 on a TLS listener and then answers static files over it with a protocol error
(Chromium: ERR_HTTP2_PROTOCOL_ERROR), so a phone's or tablet's browser, which takes HTTP/2
when offered, cannot load a page from it. WebSockets are not affected (a browser opens them
over HTTP/1.1), so MQTT stays on mosquitto's TLS WebSockets listeners and only the static files
come from here, offering HTTP/1.1 alone.

Read-only, static, no directory listings, nothing but GET and HEAD. The device key in the
attendant's enrolment link is in the URL's fragment, which a browser never sends to a server.
`/dashboard/station.json` tells the dashboard which port its MQTT listener is on.
"""

from __future__ import annotations

import functools
import http.server
import json
import logging
import ssl
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".wasm": "application/wasm", ".png": "image/png",
         ".svg": "image/svg+xml", ".json": "application/json"}
DASHBOARD = "/dashboard/"


class _Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the page's files come over one connection
    server_version = "spbu-pages"
    sys_version = ""

    def __init__(self, *args: Any, dashboard: Path | None, station_json: bytes, **kwargs: Any) -> None:
        self.dashboard = dashboard
        self.station_json = station_json
        super().__init__(*args, **kwargs)

    def translate_path(self, path: str) -> str:
        route = path.split("?", 1)[0].split("#", 1)[0]
        if self.dashboard is None or not (route == DASHBOARD[:-1] or route.startswith(DASHBOARD)):
            return super().translate_path(path)
        attendant_root = self.directory  # one handler per connection: swapped for this call only
        self.directory = str(self.dashboard)
        try:  # the base class drops "..", so the dashboard's files are all this can reach
            return super().translate_path(path[len(DASHBOARD) - 1:] or "/")
        finally:
            self.directory = attendant_root

    def do_GET(self) -> None:
        if self._is_station_json():
            self._send_station_json(body=True)
        else:
            super().do_GET()

    def do_HEAD(self) -> None:
        if self._is_station_json():
            self._send_station_json(body=False)
        else:
            super().do_HEAD()

    def _is_station_json(self) -> bool:
        return self.dashboard is not None and self.path.split("?", 1)[0] == DASHBOARD + "station.json"

    def _send_station_json(self, body: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.station_json)))
        self.end_headers()
        if body:
            self.wfile.write(self.station_json)

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
        log.debug("station pages: " + format, *args)


class PageServer:
    def __init__(self, root: Path, certfile: Path, keyfile: Path, host: str = "0.0.0.0", port: int = 9444,
                 dashboard: Path | None = None, dashboard_mqtt_port: int = 9001) -> None:
        """root: the attendant's app; dashboard: the manager's page, served at /dashboard/, whose
        MQTT is on the broker's TLS WebSockets port dashboard_mqtt_port."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(certfile), str(keyfile))
        context.set_alpn_protocols(["http/1.1"])
        station_json = json.dumps({"mqtt_port": dashboard_mqtt_port}).encode()
        handler = functools.partial(_Handler, directory=str(root), dashboard=dashboard, station_json=station_json)
        self.httpd = http.server.ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = int(self.httpd.server_address[1])
        self._thread: threading.Thread | None = None

    def start(self) -> PageServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="station-pages", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=5)
        self.httpd.server_close()
