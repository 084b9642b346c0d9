"""The demo page of the Hunter UI path (`web/demo/`), served on its own origin so that the browser
calls the API cross-origin, as Hunter's UI will: `web/` (the component and the page),
`node_modules/@azure/msal-browser/lib/` (Microsoft's library, unmodified) and `/config.json` (the
authority, the SPA's client id, the API's scope and base URL, the sample leads).

`make run` starts it beside the host; the browser tests start it per test (tests/browser)."""

from __future__ import annotations

import json
import mimetypes
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"
MSAL = ROOT / "node_modules" / "@azure" / "msal-browser" / "lib"
SAMPLE_LEADS: list[dict[str, Any]] = [
    {"domain": "contoso-demo.example", "company_name": "Contoso Ltd", "final_score": 91, "city": "Berlin"},
    {"domain": "fabrikam-demo.example", "company_name": "Fabrikam GmbH", "final_score": 77, "city": "Munich"},
    {"domain": "northwind-demo.example", "company_name": "Northwind Traders", "final_score": 64, "city": "Hamburg"},
]


def page_config(
    info: dict[str, Any], api_base: str, origin: str, leads: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The demo page's `/config.json` for a simulator (`info()`) and the host's API base URL."""
    return {
        "clientId": info["spa_client_id"],
        "authority": info["authority"],
        "knownAuthorities": [info["base_url"].split("://", 1)[1]],
        "redirectUri": f"{origin}/",
        "apiScope": info["api_scope"],
        "apiBase": api_base,
        "leads": leads if leads is not None else SAMPLE_LEADS,
    }


def _file(path: str) -> Path | None:
    if path in ("/", "/index.html"):
        return WEB / "demo" / "index.html"
    if path == "/demo.js":
        return WEB / "demo" / "demo.js"
    if path == "/d365-push-button.js":
        return WEB / "d365-push-button.js"
    prefix = "/node_modules/@azure/msal-browser/lib/"
    if path.startswith(prefix) and "/" not in path[len(prefix) :] and not path.endswith("/"):
        candidate = MSAL / path[len(prefix) :]
        return candidate if candidate.is_file() else None
    return None


def serve(port: int, config: Callable[[], dict[str, Any]]) -> tuple[int, Callable[[], None]]:
    """Serve the demo on 127.0.0.1:`port` (0: any); returns (port, stop)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0].split("#", 1)[0]
            if path == "/config.json":
                body, kind = json.dumps(config()).encode(), "application/json"
            else:
                found = _file(path)
                if found is None:
                    self.send_error(404)
                    return
                body = found.read_bytes()
                kind = (
                    "text/javascript"
                    if found.suffix == ".js"
                    else (mimetypes.guess_type(found.name)[0] or "text/plain")
                )
            self.send_response(200)
            self.send_header("Content-Type", f"{kind}; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="demo-ui", daemon=True).start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return int(server.server_address[1]), stop
