"""py-spiffe (PyPI `spiffe`) against a live broker's SPIFFE bundle and a VM's SVIDs.

Run by tests/tests/ecosystem.rs with the venv of scripts/ecosystem-tools.sh:

    spiffe_check.py TRUST_DOMAIN BUNDLE_JSON SVID_PEM KEY_PEM JWT_SVID AUDIENCE

The bundle is split the way SPIFFE X509-SVID §6.2 and JWT-SVID §6.2 say a consumer takes
a SPIFFE bundle apart (py-spiffe reads X.509 authorities and JWKS, not the combined
document): the `x509-svid` keys' `x5c` certificates go to `X509Bundle`, the `jwt-svid` keys
as a JWK Set to `JwtBundle.parse`. The X.509-SVID is parsed by `X509Svid.parse` (SPIFFE
X509-SVID §4-5 leaf and chain rules) and its chain verified to the bundle's authorities by
`cryptography`'s RFC 5280 path validation; the JWT-SVID by `JwtSvid.parse_and_validate`.
Then each check is shown to refuse: a JWT with a flipped signature byte, an audience it was
not issued for, an X.509-SVID against a bundle without its CA, a bundle of another trust
domain. Exits non-zero on the first failure.
"""

import base64
import datetime
import json
import sys

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import PolicyBuilder, Store
from jwt import PyJWKSet
from spiffe import JwtBundle, JwtSvid, TrustDomain, X509Bundle, X509Svid

USAGE = "TRUST_DOMAIN BUNDLE_JSON SVID_PEM KEY_PEM JWT_SVID AUDIENCE"


def fail(message):
    print(f"spiffe_check: FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def b64url_int(text):
    return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")


def split_bundle(document):
    """The CA certificates (DER) and the JWK Set of JWT keys of a SPIFFE bundle."""
    if not isinstance(document.get("keys"), list):
        fail("the bundle has no keys array (RFC 7517 §5)")
    for member in ("spiffe_sequence", "spiffe_refresh_hint"):
        if not isinstance(document.get(member), int) or isinstance(document.get(member), bool):
            fail(f"{member} is not an integer: {document.get(member)!r}")
    authorities, jwt_keys = [], []
    for index, key in enumerate(document["keys"]):
        use = key.get("use")
        if use == "x509-svid":
            if "kid" in key:
                fail(f"x509-svid key {index} has a kid (SPIFFE X509-SVID §6.1: MUST NOT)")
            chain = key.get("x5c")
            if not isinstance(chain, list) or len(chain) != 1:
                fail(f"x509-svid key {index}: x5c must hold exactly one certificate")
            der = base64.b64decode(chain[0], validate=True)
            certificate = x509.load_der_x509_certificate(der)
            numbers = certificate.public_key().public_numbers()
            if (key.get("kty"), key.get("crv")) != ("EC", "P-256") or (
                b64url_int(key["x"]),
                b64url_int(key["y"]),
            ) != (numbers.x, numbers.y):
                fail(f"x509-svid key {index} does not state its certificate's key")
            authorities.append(der)
        elif use == "jwt-svid":
            jwt_keys.append(key)
        else:
            fail(f"key {index} has use {use!r}; the broker writes x509-svid and jwt-svid keys only")
    return authorities, {"keys": jwt_keys}


def verify_chain(svid, bundle):
    """RFC 5280 path validation of the SVID's leaf to the bundle's authorities."""
    store = Store(list(bundle.x509_authorities))
    verifier = PolicyBuilder().store(store).time(datetime.datetime.now(datetime.timezone.utc))
    verifier.build_client_verifier().verify(svid.leaf, svid.cert_chain[1:])


def refused(what, check):
    try:
        check()
    except Exception as error:  # noqa: BLE001 - any refusal is the expected outcome
        print(f"spiffe_check: refused as it must be: {what}: {type(error).__name__}")
        return
    fail(f"accepted: {what}")


def main():
    if len(sys.argv) != 7:
        fail(f"usage: {sys.argv[0]} {USAGE}")
    domain, bundle_path, svid_path, key_path, jwt_path, audience = sys.argv[1:]
    trust_domain = TrustDomain(domain)
    with open(bundle_path, "rb") as file:
        raw = file.read()
    document = json.loads(raw)
    # The whole document is an RFC 7517 JWK Set: PyJWT reads every key of it.
    if len(PyJWKSet.from_json(raw.decode()).keys) != len(document["keys"]):
        fail("PyJWT did not read every key of the bundle")
    authorities, jwks = split_bundle(document)
    x509_bundle = X509Bundle.parse_raw(trust_domain, b"".join(authorities))
    jwt_bundle = JwtBundle.parse(trust_domain, json.dumps(jwks).encode())
    if not x509_bundle.x509_authorities or not jwt_bundle.jwt_authorities:
        fail("py-spiffe found no X.509 authority or no JWT authority in the bundle")
    for ca in x509_bundle.x509_authorities:
        names = ca.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        if f"spiffe://{domain}" not in names.get_values_for_type(x509.UniformResourceIdentifier):
            fail(f"CA {ca.subject.rfc4514_string()} does not carry spiffe://{domain}")
        if not isinstance(ca.public_key(), ec.EllipticCurvePublicKey):
            fail("a CA key is not EC")
    print(
        f"spiffe_check: bundle sequence {document['spiffe_sequence']}, refresh hint "
        f"{document['spiffe_refresh_hint']} s: {len(x509_bundle.x509_authorities)} X.509 "
        f"authorities, {len(jwt_bundle.jwt_authorities)} JWT authorities"
    )

    with open(svid_path, "rb") as file:
        svid_pem = file.read()
    with open(key_path, "rb") as file:
        key_pem = file.read()
    svid = X509Svid.parse(svid_pem, key_pem)
    if svid.spiffe_id.trust_domain != trust_domain:
        fail(f"X.509-SVID {svid.spiffe_id} is not in {domain}")
    verify_chain(svid, x509_bundle)
    print(f"spiffe_check: X.509-SVID {svid.spiffe_id} verifies to the bundle")

    with open(jwt_path, encoding="ascii") as file:
        token = file.read().strip()
    jwt_svid = JwtSvid.parse_and_validate(token, jwt_bundle, {audience})
    if jwt_svid.spiffe_id != svid.spiffe_id:
        fail(f"JWT-SVID {jwt_svid.spiffe_id} and X.509-SVID {svid.spiffe_id} name different VMs")
    print(f"spiffe_check: JWT-SVID {jwt_svid.spiffe_id} validates for audience {audience}")

    head, payload, signature = token.split(".")
    flipped = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    flipped[7] ^= 1
    forged = f"{head}.{payload}.{base64.urlsafe_b64encode(bytes(flipped)).decode().rstrip('=')}"
    refused(
        "a JWT-SVID with one signature bit flipped",
        lambda: JwtSvid.parse_and_validate(forged, jwt_bundle, {audience}),
    )
    refused(
        "a JWT-SVID for another audience",
        lambda: JwtSvid.parse_and_validate(token, jwt_bundle, {"elsewhere"}),
    )
    other = TrustDomain("elsewhere.example")
    refused(
        "a JWT-SVID against another trust domain's bundle",
        lambda: JwtSvid.parse_and_validate(token, JwtBundle(other, jwt_bundle.jwt_authorities), {audience}),
    )
    stranger = X509Bundle(trust_domain, {stranger_ca()})
    refused("an X.509-SVID against a bundle without its CA", lambda: verify_chain(svid, stranger))
    print("spiffe_check: ok")


def stranger_ca():
    """A CA the broker never used: verifying to it must fail."""
    from cryptography.hazmat.primitives import hashes

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "stranger")])
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )


if __name__ == "__main__":
    main()
