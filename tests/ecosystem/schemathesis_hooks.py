"""A check schemathesis runs besides its own (tests/ecosystem/schemathesis.toml).

positive_data_acceptance lets a schema-valid request be refused with 400, because the
broker refuses some requests for what they say, not how they are written (a challenge of
the other evidence kind: `challenge_kind`). This check keeps the document exact anyway: a
request the document calls valid is never refused by the server's parser
(`malformed_request`), so every constraint the parser applies is in the document.
"""

import schemathesis


@schemathesis.check
def schema_valid_requests_parse(ctx, response, case):
    """A schema-valid request is never refused as malformed_request."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 400:
        return None
    try:
        body = response.json()
    except ValueError:
        body = {}
    if isinstance(body, dict) and body.get("code") == "malformed_request":
        raise AssertionError(f"a schema-valid request was refused as malformed: {body.get('reason')}")
    return None
