"""The dashboard with TLS, configured as the services are (`[tls]`, services/common/tls.py):
HTTPS on its own port (cert_file/key_file), TLS to a manager and an index that serve only TLS
(ca_file); its login cookie is then Secure. Without ca_file it cannot reach them, and says so."""

from __future__ import annotations

import base64
import http.client
import ssl
import urllib.parse
from pathlib import Path

from tests.reliability.certs import Authority
from tests.support.fleet import StartService
from tests.support.web import PASSWORD, start_dashboard


def test_https_and_tls_to_the_services(start_service: StartService, tmp_path: Path) -> None:
    ca = Authority(tmp_path / "pki", "fleet")
    node = ca.issue("node")
    server_tls = {"SECTORSTORAGE_TLS_CERT_FILE": str(node.cert), "SECTORSTORAGE_TLS_KEY_FILE": str(node.key)}
    client_tls = {"SECTORSTORAGE_TLS_CA_FILE": str(ca.ca_file)}
    index = start_service("index", env={**server_tls, **client_tls})
    manager = start_service("manager", "--index", index.address, env={**server_tls, **client_tls})
    web = start_dashboard(
        start_service, manager.address, index.address, tmp_path / "web", env={**server_tls, **client_tls}
    )
    assert "url https://" in web.proc.log()

    context = ssl.create_default_context(cafile=str(ca.ca_file))
    host, port = web.proc.address.rsplit(":", 1)
    login = base64.b64encode(f"ops:{PASSWORD}".encode()).decode()

    def get(path: str, headers: dict[str, str]) -> tuple[int, str, http.client.HTTPMessage]:
        conn = http.client.HTTPSConnection(host, int(port), context=context, timeout=30)
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read().decode()
        conn.close()
        return response.status, body, response.headers

    status, body, _ = get("/fleet", {"Authorization": f"Basic {login}"})
    assert status == 200, body
    assert "No worker is registered with the manager." in body and "not answering" not in body
    status, body, _ = get("/storage", {"Authorization": f"Basic {login}"})
    assert status == 200 and "No storage path is attached." in body

    # The login cookie only travels over HTTPS.
    conn = http.client.HTTPSConnection(host, int(port), context=context, timeout=30)
    form = urllib.parse.urlencode({"password": PASSWORD, "next": "/queue"})
    conn.request("POST", "/login", body=form, headers={"Content-Type": "application/x-www-form-urlencoded"})
    response = conn.getresponse()
    response.read()
    assert response.status == 303 and response.headers["Location"] == "/queue"
    cookie = response.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    status, body, _ = get("/queue", {"Cookie": cookie.split(";")[0]})
    assert status == 200 and "The queue is empty" in body

    # Plain HTTP to the HTTPS port gets nothing.
    plain = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        plain.request("GET", "/healthz")
        assert plain.getresponse().status == 400
    except (http.client.HTTPException, ConnectionError):
        pass

    # A dashboard that does not trust the fleet's CA (no ca_file) reaches neither service.
    blind = start_dashboard(start_service, manager.address, index.address, tmp_path / "blind")
    page = blind.get("/fleet")
    assert page.status == 503 and f"The manager at {manager.address} is not answering" in page.body
