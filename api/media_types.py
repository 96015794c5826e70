"""Which request bodies are JSON, by their Content-Type."""

import email.message


def is_json(content_type: str) -> bool:
    """`application/json`, or a JSON-based type such as `application/merge-patch+json`.
    The header as nearly every client sends it is known at once; any other is parsed."""
    if content_type == "application/json":
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )
