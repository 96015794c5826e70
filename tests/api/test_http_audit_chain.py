"""`GET /v1/audit/digest`: the chain's head now, for every reader to keep."""

from starlette.testclient import TestClient

from api.bootstrap import Ledger
from ledger.statuses import JobStatus
from projections.audit_chain.digest import Digest, KeptDigest
from projections.audit_chain.verify import verify_chain
from tests.api.conftest import auth
from tests.chain_helpers import digest_of_all, events_in_log
from tests.conftest import JobFactory


def test_a_digest_is_served_to_an_auditor_and_verifies(
    client: TestClient, ledger: Ledger, job_factory: JobFactory
) -> None:
    job_factory(JobStatus.COMPLETED)
    digest_of_all(ledger.engine)  # the feed shows every event
    response = client.get("/v1/audit/digest", headers=auth("audrey"))
    assert response.status_code == 200
    document = response.json()
    assert document["chain"] == "sha256-copy-v1"
    assert document["events"] == events_in_log(ledger.engine)
    served = KeptDigest("served", Digest.of(document))
    assert verify_chain(ledger.engine, [served]).intact


def test_a_digest_needs_a_token(client: TestClient) -> None:
    assert client.get("/v1/audit/digest").status_code == 401
