"""Generic OIDC relying parties (PyJWT's PyJWKClient, jwcrypto) against a live broker's
OpenID Connect issuer and the tokens a VM exchanged its JWT-SVID for.

Run by tests/tests/ecosystem.rs with the venv of scripts/ecosystem-tools.sh:

    oidc_check.py valid ISSUER CA_PEM CASE_JSON
    oidc_check.py expired ISSUER CA_PEM CASE_JSON

CASE_JSON: {"audience": the relying party's own audience, "subject": the VM's SPIFFE ID,
"tokens": exchanged tokens for that audience, "other_audience": one for another audience,
"jwt_svid": the VM's JWT-SVID, "spiffe_jwks": the broker's SPIFFE JWK Set (/v1/bundle/jwks)}.

`valid`: discovery as an OIDC relying party does it (OpenID Connect Discovery 1.0 §4: the
document at ISSUER/.well-known/openid-configuration, whose `issuer` must be ISSUER exactly),
the JWK Set from its `jwks_uri` (PyJWKClient, over TLS to CA_PEM), then every token
validated by PyJWT (signature, `iss`, `aud`, `exp`, `iat`, `sub` required) and by jwcrypto.
Each check is then shown to refuse: another audience, another issuer, a flipped signature
bit, the JWT-SVID (no `iss`), and jwcrypto with the SPIFFE form of the same keys (`use`
`jwt-svid`).
`expired`: every token is refused as expired by PyJWT without leeway, and accepted with the
expiry check alone switched off: expiry is what refused it.

Exits non-zero on the first failure.
"""

import base64
import json
import ssl
import sys

import jwt
import requests
from jwcrypto import jwk as jwcrypto_jwk
from jwcrypto import jwt as jwcrypto_jwt

REQUIRED = ["iss", "sub", "aud", "exp", "iat"]


def fail(message):
    print(f"oidc_check: FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def refused(what, check, expected, says=""):
    try:
        check()
    except expected as error:
        if says not in repr(error):
            fail(f"{what}: refused, but not for {says}: {error!r}")
        print(f"oidc_check: refused as it must be: {what}: {type(error).__name__}")
        return
    except Exception as error:  # noqa: BLE001 - the wrong refusal is a failure too
        fail(f"{what}: refused with {type(error).__name__} ({error}), not {expected.__name__}")
    fail(f"accepted: {what}")


def discover(issuer, ca):
    """The discovery document, checked as OpenID Connect Discovery 1.0 §4 says."""
    response = requests.get(f"{issuer}/.well-known/openid-configuration", verify=ca, timeout=10)
    response.raise_for_status()
    document = response.json()
    if document.get("issuer") != issuer:
        fail(f"discovery issuer {document.get('issuer')!r} is not {issuer!r} (Discovery §4.3)")
    if "ES256" not in document.get("id_token_signing_alg_values_supported", []):
        fail("the discovery document does not list ES256")
    print(f"oidc_check: discovered {issuer}: jwks_uri {document['jwks_uri']}")
    return document


def decode(client, token, audience, issuer, **options):
    key = client.get_signing_key_from_jwt(token)
    return jwt.decode(
        token,
        key,
        algorithms=["ES256"],
        audience=audience,
        issuer=issuer,
        options={"require": REQUIRED, **options},
    )


def flipped(token):
    head, payload, signature = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[5] ^= 1
    return f"{head}.{payload}.{base64.urlsafe_b64encode(bytes(raw)).decode().rstrip('=')}"


def jwcrypto_validate(token, keys, issuer, audience, subject):
    checked = jwcrypto_jwt.JWT(
        jwt=token,
        key=keys,
        algs=["ES256"],
        check_claims={"iss": issuer, "aud": audience, "sub": subject, "exp": None, "iat": None},
    )
    return json.loads(checked.claims)


def valid(issuer, ca, case, client):
    audience, subject = case["audience"], case["subject"]
    for token in case["tokens"]:
        claims = decode(client, token, audience, issuer)
        if claims["sub"] != subject:
            fail(f"sub {claims['sub']!r} is not the VM's {subject!r}")
        print(
            f"oidc_check: PyJWT validated a token for {audience}: sub {claims['sub']}, "
            f"{claims['exp'] - claims['iat']} s, scope {claims.get('scope')!r}"
        )
    jwks_text = requests.get(client.uri, verify=ca, timeout=10).text
    keys = jwcrypto_jwk.JWKSet.from_json(jwks_text)
    for token in case["tokens"]:
        jwcrypto_validate(token, keys, issuer, audience, subject)
    print(f"oidc_check: jwcrypto validated {len(case['tokens'])} tokens with the issuer's JWK Set")

    token = case["tokens"][0]
    refused(
        "a token for another audience",
        lambda: decode(client, case["other_audience"], audience, issuer),
        jwt.InvalidAudienceError,
    )
    refused(
        "a token checked for another issuer",
        lambda: decode(client, token, audience, "https://elsewhere.example"),
        jwt.InvalidIssuerError,
    )
    refused(
        "a token with one signature bit flipped",
        lambda: decode(client, flipped(token), audience, issuer),
        jwt.InvalidSignatureError,
    )
    refused(
        "the VM's JWT-SVID (no iss: it is not an exchanged token)",
        lambda: decode(client, case["jwt_svid"], "payments", issuer),
        jwt.MissingRequiredClaimError,
    )
    # The SPIFFE form of the same keys (same kid and point, `use` jwt-svid): jwcrypto finds
    # no key it may verify a signature with.
    same = {(k["kid"], k["x"], k["y"]) for k in json.loads(jwks_text)["keys"]}
    if {(k["kid"], k["x"], k["y"]) for k in case["spiffe_jwks"]["keys"]} != same:
        fail("the SPIFFE JWK Set holds other keys than the issuer's")
    spiffe_keys = jwcrypto_jwk.JWKSet.from_json(json.dumps(case["spiffe_jwks"]))
    refused(
        "jwcrypto with the SPIFFE form of the same keys (use jwt-svid)",
        lambda: jwcrypto_validate(token, spiffe_keys, issuer, audience, subject),
        jwcrypto_jwt.JWTMissingKey,
    )


def expired(issuer, case, client):
    for token in case["tokens"]:
        refused(
            "an expired token",
            lambda token=token: decode(client, token, case["audience"], issuer),
            jwt.ExpiredSignatureError,
        )
        decode(client, token, case["audience"], issuer, verify_exp=False)
    print(f"oidc_check: {len(case['tokens'])} expired tokens are otherwise good: expiry refused them")


def main():
    if len(sys.argv) != 5 or sys.argv[1] not in ("valid", "expired"):
        fail(f"usage: {sys.argv[0]} valid|expired ISSUER CA_PEM CASE_JSON")
    mode, issuer, ca, case_path = sys.argv[1:]
    with open(case_path, encoding="utf-8") as file:
        case = json.load(file)
    document = discover(issuer, ca)
    if not document["jwks_uri"].startswith(f"{issuer}/"):
        fail(f"jwks_uri {document['jwks_uri']!r} is not under the issuer")
    client = jwt.PyJWKClient(document["jwks_uri"], ssl_context=ssl.create_default_context(cafile=ca))
    if not client.get_signing_keys():
        fail("PyJWKClient found no signing key (use sig, with kid) in the JWK Set")
    if mode == "valid":
        valid(issuer, ca, case, client)
    else:
        expired(issuer, case, client)
    print("oidc_check: ok")


if __name__ == "__main__":
    main()
