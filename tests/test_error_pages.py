"""404 and 405 as pages for browsers (with a link that fits the user), JSON for programs; the favicon."""

from __future__ import annotations

from starlette.testclient import TestClient

from tests.conftest import SignIn

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def test_a_browser_gets_an_html_404_that_leads_to_sign_in(client: TestClient) -> None:
    answer = client.get("/no-such-page", headers=BROWSER)
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("text/html")
    assert "<h1>Page not found</h1>" in answer.text and 'href="/login"' in answer.text
    assert "Back to the chat" not in answer.text


def test_a_signed_in_browser_is_offered_the_chat(client: TestClient, sign_in: SignIn) -> None:
    sign_in(client)
    for path, status in (("/no-such-page", 404), ("/logout", 405)):
        answer = client.get(path, headers=BROWSER)
        assert answer.status_code == status
        assert 'href="/chat">Back to the chat' in answer.text
    no_room = client.get("/chat/bad%20name", headers=BROWSER)
    assert no_room.status_code == 400 and "No such room" in no_room.text and 'href="/chat"' in no_room.text


def test_programs_keep_json(client: TestClient) -> None:
    for headers in ({}, {"Accept": "application/json"}, {"Accept": "*/*"}):
        answer = client.get("/no-such-page", headers=headers)
        assert (answer.status_code, answer.json()) == (404, {"detail": "Not Found"})
    refused = client.get("/logout")
    assert refused.status_code == 405 and refused.json() == {"detail": "Method Not Allowed"}
    assert refused.headers["allow"] == "POST"
    posted = client.post("/no-such-page", headers=BROWSER)  # not a page to show: JSON
    assert posted.status_code == 404 and posted.json() == {"detail": "Not Found"}


def test_the_405_page_keeps_its_allow_header(client: TestClient) -> None:
    answer = client.get("/logout", headers=BROWSER)
    assert answer.status_code == 405 and answer.headers["allow"] == "POST"
    assert answer.headers["content-type"].startswith("text/html")


def test_favicon(client: TestClient) -> None:
    answer = client.get("/favicon.ico")
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/svg+xml"
    assert answer.text.startswith("<svg")
    assert 'rel="icon" href="/static/favicon.svg"' in client.get("/login").text
