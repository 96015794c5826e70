"""The log's hash chain: a digest of its head, for auditors to keep off the database."""

from starlette.responses import Response

from api.auth import Reader
from api.models import AuditDigestView
from api.params import TheLedger
from api.presenters import audit_digest_view
from api.responses import json_response
from api.routing import api_router
from projections.audit_chain.digest import digest_at
from projections.audit_chain.keeper import advance_chain
from projections.audit_chain.keeping import BLOCKS_PER_POLL

router = api_router(401, 403, 503)


@router.get(
    "/v1/audit/digest",
    summary="the hash chain's head now: a digest to keep off the database",
    response_model=AuditDigestView,
)
def audit_digest(caller: Reader, ledger: TheLedger) -> Response:
    """Chains what the feed shows now, at most as much as one of the monitor's polls does
    (a long unchained log is chained by the monitor over several polls, not by a reader's
    request), then answers the feed cursor, the number of events and the chain's head
    there. `jobledger audit verify --digest FILE` checks it later."""
    head = advance_chain(ledger.engine, most_blocks=BLOCKS_PER_POLL)
    return json_response(audit_digest_view(digest_at(ledger.engine, head)))
