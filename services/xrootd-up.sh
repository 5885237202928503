#!/bin/bash
# xrootd-up.sh - a grid storage element for the tests: Debian's XRootD server on port 1094
# (reached as root://localhost:1094; connections from other hosts are refused), exporting
# /data, that admits only X.509 (GSI) clients whose certificate chain ends at the test CA
# made here and whose DN the grid-mapfile maps to an account the authorization database
# lets in.
#
# Made once and kept (GRID_STATE, default /var/lib/tardis-sge-dask/grid):
#   ca/                    the test CA's certificate and key (root only)
#   certificates/          the trust directory, <hash>.0: what X509_CERT_DIR points at
#   host/                  the server's certificate, CN=localhost (the xrootd account's)
#   users/pilot/           a user certificate and key; tests make proxies from it
#   users/stranger/        one from the same CA that the grid-mapfile does not know
#   grid-mapfile, authdb   DN -> account, account -> rights
#   storage/data/          what the server exports as /data
#   run/                   configuration, log, pid file, admin path
# Certificates are issued again when they would expire within a week. Idempotent: a
# server already running with the same configuration is left alone, about a second.
set -euo pipefail
STATE=${GRID_STATE:-/var/lib/tardis-sge-dask/grid}
PORT=${XROOTD_PORT:-1094}
RUN=$STATE/run
LOGFILE=$RUN/xrootd.log
SERVICE=xrootd-up
source "$(dirname "$0")/lib.sh"

# the server, GSI (xrootd-plugins), xrdfs for the probe, voms-proxy-fake for the proxies
install_packages xrootd-server xrootd-plugins xrootd-client voms-clients openssl
id xrootd >/dev/null 2>&1 || useradd --system --home-dir /var/spool/xrootd --shell /usr/sbin/nologin xrootd
# the DN the tests' drones present, and the grid account it maps to (not a Unix account:
# the mapping, not the client's login name, is what the server authorizes)
PILOT_DN="/DC=test/DC=tardis-sge-dask/CN=Drone Pilot"
PILOT_ACCOUNT=gridpilot
STRANGER_DN="/DC=test/DC=tardis-sge-dask/CN=Stranger"
WEEK=604800

mkdir -p "$STATE" "$STATE/ca" "$STATE/certificates" "$STATE/host" "$STATE/users" "$RUN"
chmod 755 "$STATE" "$STATE/certificates" "$STATE/users"
chmod 700 "$STATE/ca"

if [ ! -s "$STATE/ca/ca.key" ] || ! openssl x509 -checkend "$WEEK" -noout -in "$STATE/ca/ca.pem" >/dev/null 2>&1; then
    log "making the test CA"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 \
        -subj "/DC=test/DC=tardis-sge-dask/CN=tardis-sge-dask Test CA" \
        -addext "basicConstraints=critical,CA:true" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout "$STATE/ca/ca.key" -out "$STATE/ca/ca.pem" 2>/dev/null
    chmod 600 "$STATE/ca/ca.key"
    # a new CA: what the old one signed is worthless
    rm -f "$STATE/host/hostcert.pem" "$STATE"/users/*/usercert.pem
fi
# OpenSSL-style trust directory: clients and server look certificates up by subject hash
rm -f "$STATE"/certificates/*
cp "$STATE/ca/ca.pem" "$STATE/certificates/$(openssl x509 -noout -hash -in "$STATE/ca/ca.pem").0"
chmod 644 "$STATE"/certificates/*

# issue DIR NAME SUBJECT EXTENSIONS... : DIR/NAMEcert.pem and DIR/NAMEkey.pem signed by the
# test CA, unless a valid one for another week is there
issue() {
    local dir=$1 name=$2 subject=$3; shift 3
    if openssl x509 -checkend "$WEEK" -noout -in "$dir/${name}cert.pem" >/dev/null 2>&1 && [ -s "$dir/${name}key.pem" ]; then
        return 0
    fi
    log "issuing $subject"
    local ext
    ext=$(mktemp)
    printf '%s\n' "$@" >"$ext"
    openssl req -new -newkey rsa:2048 -nodes -subj "$subject" \
        -keyout "$dir/${name}key.pem" -out "$dir/$name.csr" 2>/dev/null
    openssl x509 -req -sha256 -days 365 -in "$dir/$name.csr" -CA "$STATE/ca/ca.pem" \
        -CAkey "$STATE/ca/ca.key" -set_serial "0x$(openssl rand -hex 8)" \
        -extfile "$ext" -out "$dir/${name}cert.pem" 2>/dev/null
    rm -f "$ext" "$dir/$name.csr"
    chmod 400 "$dir/${name}key.pem"
    chmod 644 "$dir/${name}cert.pem"
}
# The client checks that the server's certificate names the host it dialled.
issue "$STATE/host" host "/DC=test/DC=tardis-sge-dask/CN=localhost" \
    "basicConstraints=critical,CA:false" "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=DNS:localhost,IP:127.0.0.1"
chown -R xrootd:xrootd "$STATE/host"
chmod 700 "$STATE/host"
for user in pilot stranger; do
    mkdir -p -m 700 "$STATE/users/$user"
    dn=$PILOT_DN
    [ "$user" = stranger ] && dn=$STRANGER_DN
    issue "$STATE/users/$user" user "$dn" \
        "basicConstraints=critical,CA:false" \
        "keyUsage=critical,digitalSignature,keyEncipherment,dataEncipherment" \
        "extendedKeyUsage=clientAuth"
done

printf '"%s" %s\n' "$PILOT_DN" "$PILOT_ACCOUNT" >"$STATE/grid-mapfile"
printf 'u %s /data a\n' "$PILOT_ACCOUNT" >"$STATE/authdb"
chmod 644 "$STATE/grid-mapfile" "$STATE/authdb"
mkdir -p "$STATE/storage/data"
chown xrootd:xrootd "$STATE/storage" "$STATE/storage/data"
chown -R xrootd:xrootd "$RUN"

# usemap: a DN without a grid-mapfile line is refused; -crl:0: the test CA publishes no
# CRL; -vomsat:0: VOMS attributes are a site's business, the tests authorize by DN.
cat >"$RUN/xrootd.cfg.new" <<CFG
all.adminpath $RUN
all.pidpath $RUN
xrd.port $PORT
# only this host: no client elsewhere has any business with the tests' storage
xrd.network nodnr
xrd.allow host 127.0.0.1
xrd.allow host [::1]
all.export /data
oss.localroot $STATE/storage
xrootd.seclib libXrdSec.so
sec.protocol gsi -certdir:$STATE/certificates -cert:$STATE/host/hostcert.pem -key:$STATE/host/hostkey.pem -gridmap:$STATE/grid-mapfile -gmapopt:2 -crl:0 -vomsat:0
sec.protbind * only gsi
ofs.authorize 1
acc.authdb $STATE/authdb
acc.audit deny grant
CFG
digest=$(cat "$RUN/xrootd.cfg.new" "$STATE/host/hostcert.pem" "$STATE/certificates"/* | sha256sum | cut -c1-16)
mv "$RUN/xrootd.cfg.new" "$RUN/xrootd.cfg"

# A short proxy of the pilot's DN for the readiness probe: an authenticated stat, the
# thing a drone will do, proves the whole chain (CA, host certificate, mapping, rights).
probe_proxy=$RUN/probe.proxy
voms-proxy-fake -q -rfc -hours 1 -cert "$STATE/users/pilot/usercert.pem" \
    -key "$STATE/users/pilot/userkey.pem" -certdir "$STATE/certificates" -out "$probe_proxy" \
    >/dev/null 2>&1 || die "voms-proxy-fake could not make the probe proxy"
chmod 600 "$probe_proxy"
probe() {
    X509_CERT_DIR=$STATE/certificates X509_USER_PROXY=$probe_proxy \
        timeout 10 xrdfs "root://localhost:$PORT" stat /data
}

if pid=$(alive "$RUN/xrootd.pid" xrootd); then
    if [ "$(cat "$RUN/config.digest" 2>/dev/null)" = "$digest" ] && probe >/dev/null 2>&1; then
        log "xrootd already running ($pid)"
        exit 0
    fi
    log "configuration changed or server not answering: restarting xrootd ($pid)"
    stop_pid "$pid"
fi
if bash -c "</dev/tcp/127.0.0.1/$PORT" 2>/dev/null; then
    die "port $PORT is taken by another process (set XROOTD_PORT)"
fi
rm -f "$RUN/xrootd.pid"
# -b: daemonize; -R: drop to the xrootd account after reading the configuration
start_daemon "$LOGFILE" xrootd -b -R xrootd -k 3 -l "$LOGFILE" -c "$RUN/xrootd.cfg"
wait_for_daemon 30 xrootd "$LOGFILE" probe \
    || die_with_log "$LOGFILE" "xrootd does not answer an authenticated stat of /data after 30 s"
printf '%s\n' "$digest" >"$RUN/config.digest"
log "xrootd up: $(cat "$RUN/xrootd.pid"), root://localhost:$PORT//data, $(xrootd -v 2>&1)"
