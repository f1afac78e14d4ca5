"""The optional token: bearer header on the API, cookie after the page's login."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from fastapi.testclient import TestClient

from tests.serve.conftest import TOKEN


def test_missing_and_wrong_token_are_401(token_client: TestClient, a_cell: tuple[str, Path]) -> None:
    token_client.cookies.clear()
    url = f"/api/cells/{quote(a_cell[0], safe='')}/neighbours"
    for path in ("/api/info", url, "/api/umap", url.replace("neighbours", "thumb")):
        r = token_client.get(path)
        assert r.status_code == 401 and r.json()["error"] == "missing_token"
        r = token_client.get(path, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and r.json()["error"] == "wrong_token"
    r = token_client.post("/api/query", files={"image": ("c.tiff", a_cell[1].read_bytes())})
    assert r.status_code == 401
    assert token_client.get(url, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert token_client.get("/api/health").status_code == 200  # liveness stays open
    assert token_client.get("/").status_code == 200  # the page shell, which then asks for the token


def test_login_sets_a_cookie_the_page_uses(token_client: TestClient) -> None:
    token_client.cookies.clear()
    r = token_client.post("/api/login", json={"token": "nope"})
    assert r.status_code == 401 and r.json()["error"] == "wrong_token"
    r = token_client.post("/api/login", json={"token": TOKEN})
    assert r.status_code == 204
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert token_client.get("/api/info").status_code == 200
    token_client.cookies.clear()
    assert token_client.get("/api/info").status_code == 401


def test_info_says_a_token_is_needed(token_client: TestClient) -> None:
    assert token_client.get("/api/info", headers={"Authorization": f"Bearer {TOKEN}"}).json()["auth"] is True
    schema = token_client.get("/openapi.json").json()
    assert "HTTPBearer" in schema["components"]["securitySchemes"]
