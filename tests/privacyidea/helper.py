"""Test helpers for the privacyIDEA harness, run with the harness venv's python.

  helper.py cert DIR                          a CA and a server certificate for 127.0.0.1/localhost:
                                              DIR/ca.pem, DIR/server.pem, DIR/server.key
  helper.py push-enroll URL JWT USER REALM KEYDIR [CAFILE]
                                              enrols a push token for USER as a smartphone would
                                              (both steps, poll-only), prints its serial and keeps
                                              the phone's private key in KEYDIR/<serial>.pem
  helper.py admin-jwt URL USER PASSWORD [CAFILE]
                                              logs in as an administrator, prints the JWT
  helper.py totp-enroll URL JWT USER REALM SEED_HEX [CAFILE]
                                              enrols a TOTP token (SHA1, 6 digits, 30 s, no PIN)
  helper.py push-answer URL SERIAL KEYDIR approve|decline [CAFILE] [WAIT_SECONDS]
                                              polls like the privacyIDEA Authenticator app and
                                              answers every open challenge; exit status 3
                                              when none appeared within WAIT_SECONDS (default 10)

Only the standard library and `cryptography` (a privacyIDEA dependency) are used.
"""
import base64
import datetime
import json
import os
import ssl
import sys
import time
import urllib.parse
import urllib.request

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID


def cert(directory):
    os.makedirs(directory, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Portcullis test CA")])
    ca = (x509.CertificateBuilder()
          .subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                         critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress
    srv = (x509.CertificateBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
           .issuer_name(ca_name)
           .public_key(key.public_key())
           .serial_number(x509.random_serial_number())
           .not_valid_before(now - datetime.timedelta(hours=1))
           .not_valid_after(now + datetime.timedelta(days=30))
           .add_extension(x509.SubjectAlternativeName([
               x509.DNSName("localhost"),
               x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
           .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
           .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                          critical=False)
           .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    with open(os.path.join(directory, "ca.pem"), "wb") as f:
        f.write(ca.public_bytes(pem))
    with open(os.path.join(directory, "server.pem"), "wb") as f:
        f.write(srv.public_bytes(pem))
    with open(os.path.join(directory, "server.key"), "wb") as f:
        f.write(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))


def _ctx(cafile):
    return ssl.create_default_context(cafile=cafile) if cafile else None


def _call(url, method="GET", params=None, headers=None, cafile=None):
    data = None
    if params is not None and method == "GET":
        url = url + "?" + urllib.parse.urlencode(params)
    elif params is not None:
        data = urllib.parse.urlencode(params).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, context=_ctx(cafile), timeout=10) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        sys.exit(f"{method} {url}: HTTP {e.code}: {e.read().decode(errors='replace')}")


def _sign(key, text):
    sig = key.sign(text.encode(), padding.PKCS1v15(), hashes.SHA256())
    return base64.b32encode(sig).decode()


def push_enroll(url, jwt, user, realm, keydir, cafile=None):
    auth = {"Authorization": jwt}
    r = _call(url + "/token/init", "POST",
              {"type": "push", "genkey": "1", "user": user, "realm": realm}, auth, cafile)
    detail = r["detail"]
    serial = detail["serial"]
    qr = urllib.parse.urlparse(detail["pushurl"]["value"])
    credential = urllib.parse.parse_qs(qr.query)["enrollment_credential"][0]
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    r = _call(url + "/ttype/push", "POST",
              {"serial": serial, "enrollment_credential": credential, "fbtoken": "none",
               "pubkey": base64.urlsafe_b64encode(der).decode()}, None, cafile)
    if not r["result"].get("status"):
        sys.exit(f"push enrollment step 2 failed: {r}")
    os.makedirs(keydir, exist_ok=True)
    with open(os.path.join(keydir, serial + ".pem"), "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    print(serial)


def push_answer(url, serial, keydir, answer, cafile=None, wait=10.0):
    with open(os.path.join(keydir, serial + ".pem"), "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    deadline = time.monotonic() + float(wait)
    while True:
        ts = datetime.datetime.now(datetime.timezone.utc).isoformat()
        r = _call(url + "/ttype/push", "GET",
                  {"serial": serial, "timestamp": ts, "signature": _sign(key, f"{serial}|{ts}")},
                  None, cafile)
        challenges = r["result"].get("value") or []
        if challenges:
            break
        if time.monotonic() > deadline:
            sys.exit(3)
        time.sleep(0.2)
    # Every open challenge gets the answer: a trigger for an OTP also sends a push (privacyIDEA
    # challenges every token of the user), and the phone cannot tell which one a test waits for.
    for challenge in challenges:
        nonce = challenge["nonce"]
        params = {"serial": serial, "nonce": nonce}
        if answer == "decline":
            params["decline"] = "1"
            params["signature"] = _sign(key, f"{nonce}|{serial}|decline")
        else:
            params["signature"] = _sign(key, f"{nonce}|{serial}")
        r = _call(url + "/ttype/push", "POST", params, None, cafile)
        if not r["result"].get("value"):
            sys.exit(f"push answer refused: {r}")


def admin_jwt(url, user, password, cafile=None):
    r = _call(url.rstrip("/") + "/auth", "POST", {"username": user, "password": password}, cafile=cafile)
    print(r["result"]["value"]["token"])


def totp_enroll(url, jwt, user, realm, seed_hex, cafile=None):
    r = _call(
        url.rstrip("/") + "/token/init",
        "POST",
        {"type": "totp", "otpkey": seed_hex, "user": user, "realm": realm, "pin": "", "genkey": "0"},
        headers={"Authorization": jwt},
        cafile=cafile,
    )
    if r["result"].get("value") is not True:
        sys.exit(f"totp enrollment refused: {r}")
    print(r["detail"]["serial"])


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "cert":
        cert(*args)
    elif cmd == "push-enroll":
        push_enroll(*args)
    elif cmd == "admin-jwt":
        admin_jwt(*args)
    elif cmd == "totp-enroll":
        totp_enroll(*args)
    elif cmd == "push-answer":
        push_answer(*args)
    else:
        sys.exit(__doc__)
