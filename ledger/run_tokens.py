"""Run tokens: the secret that fences an attempt, and the digest the ledger keeps of it.

A worker learns its run's token once, in the answer to its claim. The log, the
current-status projection and the lease keep only the token's SHA-256 digest, so
nothing a reader can see there lets anyone act on the run: a presented token is
checked by comparing its digest with the stored one.
"""

import hashlib
import hmac
import secrets


def new_run_token() -> str:
    """A run token no one can guess: it fences the attempt it opens."""
    return secrets.token_hex(16)


def run_token_digest(run_token: str) -> str:
    """The SHA-256 of `run_token` (its UTF-8 bytes), in hex: what the ledger stores."""
    return hashlib.sha256(run_token.encode()).hexdigest()


def run_token_matches(run_token: str, digest: str | None) -> bool:
    """Whether `run_token` is the token `digest` was made from (compared in constant time)."""
    return digest is not None and hmac.compare_digest(run_token_digest(run_token), digest)


RUN_TOKEN_DIGEST_SQL = "encode(sha256(convert_to({token}, 'UTF8')), 'hex')"
"""`run_token_digest` in SQL, over the text expression `{token}`."""
