#!/bin/sh
# Enrol this hospital, then run its peer: the entrypoint of the medswarm image.
#
# The same script runs in `docker compose up` and in scripts/netns_swarm.py (one Linux
# network namespace per hospital), so the namespace tests exercise the compose scenario.
#
#   1. Create the hospital's identity key on first start (medswarm keygen) in its own key
#      directory (a volume); a restart reuses it.
#   2. Publish its peer ID as ENROL_DIR/NAME.id (a volume shared by the demo's hospitals).
#   3. Wait until every member in MEDSWARM_MEMBERS has published its ID, then write the
#      consortium allow-list and, from the bootstrap member's ID, its full address.
#   4. exec `medswarm peer` with --key, --consortium, --state-dir, --bootstrap and the
#      container's command line (the peer options: data, site, listen, status port...).
#
# Publishing IDs through a shared directory is trust on first use, for a demo on one host.
# Between real hospitals the IDs are exchanged out of band and the consortium file is
# mounted read-only instead (set MEDSWARM_CONSORTIUM to its path: steps 2-3 are skipped).
#
# Environment (paths default to the image's volumes):
#   MEDSWARM_NAME            this member's name, e.g. hospital-a (required)
#   MEDSWARM_MEMBERS         every member's name, space-separated (required unless
#                            MEDSWARM_CONSORTIUM is set)
#   MEDSWARM_BOOTSTRAP       NAME=/ip4/ADDR/tcp/PORT of the member to dial first; ignored by
#                            that member itself
#   MEDSWARM_KEY_DIR         /var/lib/medswarm/key    (peer.key, peer.id)
#   MEDSWARM_STATE_DIR       /var/lib/medswarm/state  (checkpoints, report.json)
#   MEDSWARM_ENROL_DIR       /var/lib/medswarm/enrol  (NAME.id of every member)
#   MEDSWARM_CONSORTIUM      an existing consortium file to use as is
#   MEDSWARM_ENROL_TIMEOUT   seconds to wait for the other members (default 300)
#   MEDSWARM_VERBOSE=1       log every event (medswarm -v)
#   MEDSWARM_DRY_RUN=1       print the peer command, one argument a line, instead of running it
set -eu

case ${1:-} in
    -h | --help) exec medswarm peer --help ;;
esac

die() {
    echo "medswarm-entrypoint: error: $*" >&2
    exit 2
}

valid_name() {
    case $1 in
        '' | *[!A-Za-z0-9_-]*) return 1 ;;
    esac
}

# A libp2p peer ID is base58: checked before it goes into a TOML file or an address.
valid_id() {
    case $1 in
        '' | *[!123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz]*) return 1 ;;
    esac
}

NAME=${MEDSWARM_NAME:-}
valid_name "$NAME" || die "MEDSWARM_NAME must be a member name (letters, digits, - and _), got '$NAME'"
KEY_DIR=${MEDSWARM_KEY_DIR:-/var/lib/medswarm/key}
STATE_DIR=${MEDSWARM_STATE_DIR:-/var/lib/medswarm/state}
ENROL_DIR=${MEDSWARM_ENROL_DIR:-/var/lib/medswarm/enrol}
TIMEOUT=${MEDSWARM_ENROL_TIMEOUT:-300}
case $TIMEOUT in '' | *[!0-9]*) die "MEDSWARM_ENROL_TIMEOUT must be whole seconds, got '$TIMEOUT'" ;; esac

mkdir -p "$KEY_DIR" "$STATE_DIR"
KEY=$KEY_DIR/peer.key

# 1. identity, created once
if [ ! -f "$KEY" ]; then
    medswarm keygen --out "$KEY" > "$KEY_DIR/peer.id.tmp" || die "cannot create $KEY"
    mv "$KEY_DIR/peer.id.tmp" "$KEY_DIR/peer.id"
    echo "medswarm-entrypoint: $NAME created its key, peer id $(cat "$KEY_DIR/peer.id")" >&2
fi
[ -f "$KEY_DIR/peer.id" ] || die "$KEY exists but $KEY_DIR/peer.id is missing"
MY_ID=$(cat "$KEY_DIR/peer.id")
valid_id "$MY_ID" || die "$KEY_DIR/peer.id does not hold a peer id"

member_id() {
    cat "$ENROL_DIR/$1.id"
}

CONSORTIUM=${MEDSWARM_CONSORTIUM:-}
if [ -z "$CONSORTIUM" ]; then
    MEMBERS=${MEDSWARM_MEMBERS:-}
    [ -n "$MEMBERS" ] || die "MEDSWARM_MEMBERS must list every member's name"
    for member in $MEMBERS; do
        valid_name "$member" || die "bad member name '$member' in MEDSWARM_MEMBERS"
    done
    case " $MEMBERS " in *" $NAME "*) ;; *) die "$NAME is not in MEDSWARM_MEMBERS ($MEMBERS)" ;; esac

    # 2. publish this member's ID (atomically: a reader never sees half a file)
    mkdir -p "$ENROL_DIR"
    printf '%s\n' "$MY_ID" > "$ENROL_DIR/.$NAME.id.tmp"
    mv "$ENROL_DIR/.$NAME.id.tmp" "$ENROL_DIR/$NAME.id"

    # 3. wait for every member, then write the allow-list
    waited=0
    for member in $MEMBERS; do
        while [ ! -f "$ENROL_DIR/$member.id" ]; do
            [ "$waited" -lt "$TIMEOUT" ] || die "$member did not enrol within ${TIMEOUT}s (no $ENROL_DIR/$member.id)"
            [ "$waited" -gt 0 ] || echo "medswarm-entrypoint: $NAME waits for the other members to enrol" >&2
            sleep 1
            waited=$((waited + 1))
        done
        valid_id "$(member_id "$member")" || die "$ENROL_DIR/$member.id does not hold a peer id"
    done
    CONSORTIUM=$STATE_DIR/consortium.toml
    {
        echo "# written by docker/entrypoint.sh from $ENROL_DIR"
        for member in $MEMBERS; do
            printf '[[member]]\nname = "%s"\npeer_id = "%s"\n' "$member" "$(member_id "$member")"
        done
    } > "$CONSORTIUM.tmp"
    mv "$CONSORTIUM.tmp" "$CONSORTIUM"
fi

# 4. the peer command
set -- peer --key "$KEY" --consortium "$CONSORTIUM" --state-dir "$STATE_DIR" "$@"
BOOTSTRAP=${MEDSWARM_BOOTSTRAP:-}
if [ -n "$BOOTSTRAP" ]; then
    boot_name=${BOOTSTRAP%%=*}
    boot_addr=${BOOTSTRAP#*=}
    [ "$boot_name" != "$BOOTSTRAP" ] && valid_name "$boot_name" \
        || die "MEDSWARM_BOOTSTRAP must be NAME=/ip4/ADDR/tcp/PORT, got '$BOOTSTRAP'"
    if [ "$boot_name" != "$NAME" ]; then
        [ -f "$ENROL_DIR/$boot_name.id" ] || die "bootstrap member $boot_name has not enrolled"
        set -- "$@" --bootstrap "$boot_addr/p2p/$(member_id "$boot_name")"
    fi
fi
if [ "${MEDSWARM_VERBOSE:-0}" = 1 ]; then
    set -- -v "$@"
fi
if [ "${MEDSWARM_DRY_RUN:-0}" = 1 ]; then
    for arg in medswarm "$@"; do printf '%s\n' "$arg"; done
    exit 0
fi
exec medswarm "$@"
