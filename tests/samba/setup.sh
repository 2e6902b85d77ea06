#!/usr/bin/env bash
# Provisions and starts a throw-away Samba AD DC on loopback for Portcullis' directory tests.
#
#   tests/samba/setup.sh [DIR]      # idempotent; DIR defaults to /var/tmp/portcullis-samba
#   tests/samba/setup.sh --stop [DIR]
#
# What it does, each step only when needed:
#  1. installs the Debian packages (samba samba-ad-dc samba-ad-provision winbind krb5-user
#     ldap-utils), pre-seeding debconf so krb5-config never asks anything;
#  2. provisions realm SAMDOM.TEST (NetBIOS domain SAMDOM) into DIR, with everything kept on
#     127.0.0.1: no DNS forwarder, no DNS/NBT services, no NetBIOS, DNS and SPN updates disabled,
#     `ntlm auth = mschapv2-and-ntlmv2-only` (MS-CHAPv2 through ntlm_auth needs it), and a TLS
#     certificate made here from our own CA (DIR/tls/ca.pem; the certificate names
#     dc1.samdom.test and IP 127.0.0.1, so clients can verify it when they connect by address);
#  3. starts `samba` in the background (pid in DIR/samba.pid, log in DIR/samba.log) unless it
#     is already running from DIR, and waits until LDAPS answers a simple bind;
#  4. creates the test users and groups (LDIF over LDAPS, see below) once per provisioning.
#
# A provisioning is reused while this script is unchanged (DIR/.stamp); otherwise it is redone.
# Only one AD DC can run per machine (winbind's socket is global): a samba started from another
# directory is stopped first.
#
# Test accounts (password for all of them: see PASSWORD below):
#   ad-alice       member of vpn-users, which is a member of staff (nested); mail + UPN set
#   ad-bob         plain user, no groups
#   ad-nodialin    msNPAllowDialin = FALSE
#   ad-dialin      msNPAllowDialin = TRUE
#   ad-disabled    userAccountControl ACCOUNTDISABLE
#   ad-expired     accountExpires in the past (1 January 2000)
#   ad-mustchange  pwdLastSet = 0 (must change the password at next logon)
#   svc-radius     the service account Portcullis binds as
# Groups: staff <- vpn-users <- ad-alice (CN=...,CN=Users,DC=samdom,DC=test).
set -euo pipefail

STOP=0
if [ "${1:-}" = "--stop" ]; then STOP=1; shift; fi
DIR="${1:-${PORTCULLIS_SAMBA_DIR:-/var/tmp/portcullis-samba}}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REALM=SAMDOM.TEST
DOMAIN=SAMDOM
BASE_DN="DC=samdom,DC=test"
ADMIN_PASS='Admin#Portcullis1'
PASSWORD='Ad#Test-Pass1'
SVC_PASS='Svc#Radius-Pass1'

say() { echo "samba setup: $*" >&2; }
die() { echo "samba setup: $*" >&2; exit 1; }

running_pid() {
    local pid
    pid="$(cat "$DIR/samba.pid" 2>/dev/null || true)"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then echo "$pid"; fi
}

stop_samba() {
    local pid
    pid="$(running_pid)"
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$DIR/samba.pid"
}

if [ "$STOP" = 1 ]; then stop_samba; say "stopped"; exit 0; fi
[ "$(id -u)" = 0 ] || die "must run as root (samba binds privileged ports)"

# 1. Packages.
PKGS=(samba samba-ad-dc samba-ad-provision winbind krb5-user ldap-utils openssl)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]} (apt-get, non-interactive)"
    debconf-set-selections <<EOF
krb5-config krb5-config/default_realm string $REALM
krb5-config krb5-config/kerberos_servers string
krb5-config krb5-config/admin_server string
krb5-config krb5-config/add_servers_realm string $REALM
krb5-config krb5-config/add_servers boolean false
krb5-config krb5-config/read_conf boolean true
EOF
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 || {
        apt-get update -q >/dev/null 2>&1 || true
        apt-get install -y -q "${missing[@]}" || die "apt-get install ${missing[*]} failed"
    }
fi
# On a machine with systemd the packages start the file-server daemons, which would hold the
# ports (445, ...) the DC needs: stop them (the DC runs its own smbd and winbindd).
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl stop smbd nmbd winbind samba-ad-dc >/dev/null 2>&1 || true
fi

# 2. Provisioning (reused while this script is unchanged).
STAMP="$(sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1)"
CONF="$DIR/etc/smb.conf"
if [ "$(cat "$DIR/.stamp" 2>/dev/null)" != "$STAMP" ]; then
    # Another DC on this machine (from an older provisioning or another directory) must go.
    stop_samba
    for pid in $(pgrep -x samba || true); do
        say "stopping samba pid $pid started from elsewhere (only one AD DC per machine)"
        kill "$pid" 2>/dev/null || true
    done
    sleep 0.5
    rm -rf "$DIR"
    mkdir -p "$DIR"
    say "provisioning $REALM into $DIR"
    samba-tool domain provision --targetdir="$DIR" --realm="$REALM" --domain="$DOMAIN" \
        --server-role=dc --dns-backend=SAMBA_INTERNAL --adminpass="$ADMIN_PASS" \
        --host-name=dc1 --host-ip=127.0.0.1 --use-rfc2307 \
        --option="interfaces=lo" --option="bind interfaces only=yes" \
        >"$DIR/provision.log" 2>&1 || { tail -20 "$DIR/provision.log" >&2; die "provisioning failed"; }

    # Our own CA and a server certificate valid for the name and the loopback address.
    TLS="$DIR/tls"
    mkdir -p "$TLS"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=Portcullis test AD CA" \
        -keyout "$TLS/ca.key" -out "$TLS/ca.pem" >/dev/null 2>&1
    openssl req -newkey rsa:2048 -nodes -subj "/CN=dc1.samdom.test" \
        -keyout "$TLS/server.key" -out "$TLS/server.csr" >/dev/null 2>&1
    printf 'subjectAltName=DNS:dc1.samdom.test,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$TLS/ext.cnf"
    openssl x509 -req -in "$TLS/server.csr" -CA "$TLS/ca.pem" -CAkey "$TLS/ca.key" \
        -CAcreateserial -days 3650 -extfile "$TLS/ext.cnf" -out "$TLS/server.pem" >/dev/null 2>&1
    chmod 600 "$TLS/server.key" "$TLS/ca.key"

    # Keep everything on loopback; see shared notes on Samba's pitfalls.
    sed -i '/dns forwarder/d' "$CONF"
    sed -i "/^\[global\]/a\\
\tserver services = -dns -nbt\\
\tdisable netbios = yes\\
\tdns update command = /bin/true\\
\tspn update command = /bin/true\\
\tntlm auth = mschapv2-and-ntlmv2-only\\
\ttls enabled = yes\\
\ttls keyfile = $TLS/server.key\\
\ttls certfile = $TLS/server.pem\\
\ttls cafile = $TLS/ca.pem\\
\tpid directory = $DIR/run\\
\twinbind request timeout = 10\\
\tlog file = $DIR/samba.log" "$CONF"
    mkdir -p "$DIR/run"
    rm -f "$DIR/.users"
    echo "$STAMP" >"$DIR/.stamp"
fi

# 3. The daemon.
if [ -z "$(running_pid)" ]; then
    for pid in $(pgrep -x samba || true); do
        say "stopping samba pid $pid started from elsewhere (only one AD DC per machine)"
        kill "$pid" 2>/dev/null || true
    done
    say "starting samba (log: $DIR/samba.log)"
    setsid samba -F -s "$CONF" --debug-stdout </dev/null >"$DIR/samba.log" 2>&1 &
    echo $! >"$DIR/samba.pid"
fi
export LDAPTLS_CACERT="$DIR/tls/ca.pem"
ADMIN_DN="CN=Administrator,CN=Users,$BASE_DN"
ok=0
for _ in $(seq 1 120); do
    if ldapsearch -LLL -H ldaps://127.0.0.1 -x -D "$ADMIN_DN" -w "$ADMIN_PASS" -b "" -s base dn >/dev/null 2>&1; then
        ok=1; break
    fi
    [ -n "$(running_pid)" ] || { tail -20 "$DIR/samba.log" >&2; die "samba exited"; }
    sleep 0.5
done
[ "$ok" = 1 ] || { tail -20 "$DIR/samba.log" >&2; die "LDAPS did not answer within 60 s"; }

# 4. Users and groups, once per provisioning.
if [ ! -f "$DIR/.users" ]; then
    say "creating the test users and groups"
    pw() { printf '"%s"' "$1" | iconv -f UTF-8 -t UTF-16LE | base64 -w0; }
    user() { # name [extra LDIF lines...]
        local n="$1"; shift
        printf 'dn: CN=%s,CN=Users,%s\nobjectClass: user\nsAMAccountName: %s\nuserPrincipalName: %s@samdom.test\nunicodePwd:: %s\nuserAccountControl: 512\n' \
            "$n" "$BASE_DN" "$n" "$n" "$(pw "$PASSWORD")"
        for l in "$@"; do printf '%s\n' "$l"; done
        printf '\n'
    }
    {
        printf 'dn: CN=svc-radius,CN=Users,%s\nobjectClass: user\nsAMAccountName: svc-radius\nunicodePwd:: %s\nuserAccountControl: 66048\n\n' \
            "$BASE_DN" "$(pw "$SVC_PASS")"
        user ad-alice "mail: alice.mail@samdom.test"
        user ad-bob
        user ad-nodialin "msNPAllowDialin: FALSE"
        user ad-dialin "msNPAllowDialin: TRUE"
        user ad-disabled
        user ad-expired "accountExpires: 125911584000000000"
        user ad-mustchange
        printf 'dn: CN=staff,CN=Users,%s\nobjectClass: group\nsAMAccountName: staff\n\n' "$BASE_DN"
        printf 'dn: CN=vpn-users,CN=Users,%s\nobjectClass: group\nsAMAccountName: vpn-users\nmember: CN=ad-alice,CN=Users,%s\n\n' "$BASE_DN" "$BASE_DN"
        printf 'dn: CN=staff,CN=Users,%s\nchangetype: modify\nadd: member\nmember: CN=vpn-users,CN=Users,%s\n\n' "$BASE_DN" "$BASE_DN"
        printf 'dn: CN=ad-disabled,CN=Users,%s\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: 514\n\n' "$BASE_DN"
        printf 'dn: CN=ad-mustchange,CN=Users,%s\nchangetype: modify\nreplace: pwdLastSet\npwdLastSet: 0\n\n' "$BASE_DN"
    } >"$DIR/users.ldif"
    ldapmodify -a -H ldaps://127.0.0.1 -x -D "$ADMIN_DN" -w "$ADMIN_PASS" -f "$DIR/users.ldif" \
        >"$DIR/users.log" 2>&1 || { tail -20 "$DIR/users.log" >&2; die "creating the test users failed"; }
    # The service account's password for configurations that read it from a file.
    printf '%s\n' "$SVC_PASS" >"$DIR/svc-radius.password"
    chmod 600 "$DIR/svc-radius.password"
    touch "$DIR/.users"
fi

# What the tests need to know.
cat >"$DIR/env" <<EOF
REALM=$REALM
DOMAIN=$DOMAIN
BASE_DN=$BASE_DN
ADMIN_DN=$ADMIN_DN
ADMIN_PASS=$ADMIN_PASS
PASSWORD=$PASSWORD
SVC_DN=CN=svc-radius,CN=Users,$BASE_DN
SVC_PASS=$SVC_PASS
CA_FILE=$DIR/tls/ca.pem
SMB_CONF=$CONF
EOF
: "$HERE"
echo "$DIR"
