"""Every route against every role and no token: each admits exactly the roles its
OpenAPI operation lists."""

from collections.abc import Callable

import pytest
from starlette.testclient import TestClient

from api.auth import Role
from tests.api.conftest import TOKENS, auth
from tests.api.operations import OPERATIONS, Operation

CALLERS = [None, *TOKENS]


@pytest.mark.parametrize("operation", OPERATIONS, ids=str)
def test_each_route_admits_exactly_its_roles(client: TestClient, operation: Operation) -> None:
    path = operation.path.replace("{job_id}", "no-such-job")
    for caller in CALLERS:
        role = Role(TOKENS[caller]) if caller else None
        if operation.streams and (operation.public or role in operation.roles):
            continue  # an admitted caller's stream never ends: tests/e2e reads it
        headers = auth(caller) if caller else {}
        response = client.request(operation.method, path, headers=headers, json={})
        if operation.public:
            assert response.status_code == 200, (caller, response.text)
        elif caller is None:
            assert response.status_code == 401, (caller, response.text)
        elif role in operation.roles:
            assert response.status_code not in (401, 403), (caller, response.text)
        else:
            assert response.status_code == 403, (caller, response.text)
            assert response.json()["required_roles"] == sorted(operation.roles)
        assert response.status_code < 500, (caller, response.text)


def test_a_wrong_token_is_401(client: TestClient) -> None:
    response = client.get("/v1/health", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_the_actor_is_the_tokens_name_never_the_clients_word(
    client_for: Callable[[bool], TestClient],
) -> None:
    client = client_for(True)
    client.post("/v1/jobs", json={"job_id": "mine"}, headers=auth("alice"))
    history = client.get("/v1/jobs/mine/history", headers=auth("audrey")).json()
    assert history["events"][0]["actor"] == "alice"


def test_without_tokens_every_caller_is_anonymous(
    client_for: Callable[[bool], TestClient],
) -> None:
    client = client_for(False)
    assert client.post("/v1/jobs", json={"job_id": "open"}).status_code == 201
    history = client.get("/v1/jobs/open/history").json()
    assert history["events"][0]["actor"] == "anonymous"


def test_serving_beyond_loopback_without_tokens_is_refused() -> None:
    from api.auth import TokenBook
    from api.serve import check_binding

    with pytest.raises(SystemExit, match="refusing"):
        check_binding("0.0.0.0", TokenBook([]))
    check_binding("127.0.0.1", TokenBook([]))
