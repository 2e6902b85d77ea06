#!/usr/bin/env bash
# Installs and configures a throw-away privacyIDEA server for Portcullis' MFA tests.
#
#   tests/privacyidea/setup.sh          # idempotent; prints the directory it prepared
#   tests/privacyidea/run.sh PORT       # then starts the server in the foreground
#
# Everything lives under ${PORTCULLIS_PI_DIR:-/var/tmp/portcullis-privacyidea}: the venv
# (reused when it already holds the pinned version), and conf/ with pi.cfg, the SQLite
# database, keys, a passwd-format user file and a TLS certificate (conf/tls/{ca,server}.pem,
# server.key). Only PyPI is needed. Every run resets conf/ to a pristine copy (built once by
# pi-manage and kept in pristine/), so a test always starts from the same state: admin `admin` /
# `admin-test-pw`, realm `portcullis` (the default) with the users of users.passwd, a
# challenge_response policy for hotp/totp/email/sms so that /validate/check with the (empty)
# token PIN answers CHALLENGE, and a poll-only push enrollment policy.
# Do not run it while a server started by run.sh is using the same directory.
set -euo pipefail

PI_VERSION="3.14"
PI_DIR="${PORTCULLIS_PI_DIR:-/var/tmp/portcullis-privacyidea}"
PYTHON="${PYTHON:-python3}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

die() { echo "privacyidea setup: $*" >&2; exit 1; }

mkdir -p "$PI_DIR"
VENV="$PI_DIR/venv"

# 1. The venv, reused when it already has the pinned version.
if [ -x "$VENV/bin/pi-manage" ] && [ "$(cat "$VENV/.portcullis-pi-version" 2>/dev/null)" = "$PI_VERSION" ]; then
    :
else
    command -v "$PYTHON" >/dev/null || die "no $PYTHON (set PYTHON=...)"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV" || die "cannot create a venv with $PYTHON (Debian: apt-get install python3-venv)"
    "$VENV/bin/pip" install --disable-pip-version-check -q "privacyidea==$PI_VERSION" \
        || die "pip install privacyidea==$PI_VERSION failed (is PyPI reachable?)"
    echo "$PI_VERSION" > "$VENV/.portcullis-pi-version"
fi

# 2. The configuration: a copy of pristine/ when that was built by this very script.
CONF="$PI_DIR/conf"
PRISTINE="$PI_DIR/pristine"
STAMP="$PI_VERSION $(sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1)"
rm -rf "$CONF"
if [ -f "$PRISTINE/.stamp" ] && [ "$(cat "$PRISTINE/.stamp")" = "$STAMP" ]; then
    cp -a "$PRISTINE" "$CONF"
    echo "$PI_DIR"
    exit 0
fi
rm -rf "$PRISTINE"
mkdir -p "$CONF"
secret() { "$VENV/bin/python" -c 'import secrets; print(secrets.token_hex(24))'; }
cat > "$CONF/pi.cfg" <<CFG
SQLALCHEMY_DATABASE_URI = 'sqlite:///$CONF/pi.sqlite'
SECRET_KEY = '$(secret)'
PI_PEPPER = '$(secret)'
PI_ENCFILE = '$CONF/enckey'
PI_AUDIT_KEY_PRIVATE = '$CONF/private.pem'
PI_AUDIT_KEY_PUBLIC = '$CONF/public.pem'
PI_LOGFILE = '$CONF/privacyidea.log'
PI_LOGLEVEL = 20
CFG

# Test users (passwd format; the resolver only needs names and uids).
cat > "$CONF/users.passwd" <<'USERS'
pi-alice:x:2001:2001:Alice Test,,,:/home/pi-alice:/bin/false
pi-bob:x:2002:2002:Bob Test,,,:/home/pi-bob:/bin/false
pi-carol:x:2003:2003:Carol Test,,,:/home/pi-carol:/bin/false
pi-push:x:2004:2004:Push Test,,,:/home/pi-push:/bin/false
USERS

cat > "$CONF/resolver.py" <<PYCONF
{"fileName": "$CONF/users.passwd"}
PYCONF
cat > "$CONF/policy-cr.py" <<'PYCONF'
{"scope": "authentication", "action": "challenge_response=hotp totp email sms", "active": True}
PYCONF

# Push tokens without a Firebase gateway: the (emulated) phone polls. The registration URL only
# ends up in the signed challenge data, so it need not carry the test's port.
cat > "$CONF/policy-push.py" <<'PYCONF'
{"scope": "enrollment", "active": True,
 "action": "push_firebase_configuration=poll only, push_registration_url=https://127.0.0.1/ttype/push"}
PYCONF

export PRIVACYIDEA_CONFIGFILE="$CONF/pi.cfg"
pm() { "$VENV/bin/pi-manage" "$@" >>"$CONF/setup.log" 2>&1 || die "pi-manage $* failed; see $CONF/setup.log"; }

pm setup create_enckey
pm setup create_audit_keys
pm setup create_tables
pm admin add admin -p admin-test-pw
pm config resolver create pt-users passwdresolver "$CONF/resolver.py"
pm config realm create portcullis pt-users
pm config realm set_default portcullis
pm config policy create pt-challenge-response authentication "" -f "$CONF/policy-cr.py"
pm config policy create pt-push-enroll enrollment "" -f "$CONF/policy-push.py"
"$VENV/bin/python" "$HERE/helper.py" cert "$CONF/tls" || die "cannot create the test certificate"

echo "$STAMP" > "$CONF/.stamp"
cp -a "$CONF" "$PRISTINE.tmp" && mv "$PRISTINE.tmp" "$PRISTINE"
echo "$PI_DIR"
