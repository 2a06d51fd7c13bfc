#!/bin/sh
# crosscast's entry point in the container image, installed as /usr/local/bin/crosscast (so
# ENTRYPOINT ["crosscast"] and `docker exec ... crosscast status` both come here).
#
# Why it exists: the image runs as a non-root user, and Docker gives a non-root user no
# capabilities, only a bounding set (what `cap_add` allows). The relay needs CAP_NET_RAW (packet
# sockets) and CAP_NET_ADMIN (forced socket buffers, multicast and interface options). We raise
# them as *ambient* capabilities with a private copy of setpriv(1) that holds them as file
# capabilities in its permitted set only ("+p", no effective bit), then exec the real crosscast,
# which inherits them. A "+eip" file capability on python itself would be simpler, but the kernel
# refuses to exec such a binary (EPERM) whenever the bounding set lacks one of its capabilities:
# every `docker run crosscast --help` without cap_add would fail with "operation not permitted".
# Here we ask only for the capabilities the bounding set holds; anything missing is reported by
# the relay's own start-up check, in one clear line.
#
# As root (compose's documented fallback, `user: root`) there is nothing to raise. Nor is there
# when the engine already made them ambient: podman does that for a non-root user with
# `--cap-add` (Docker puts them in the bounding set only); they survive the exec as they are.
# With no-new-privileges, file capabilities are not granted by the kernel, so we do not try.
#
# The CROSSCAST_ENTRYPOINT_* variables exist for tests/test_packaging.py.
set -eu

real=${CROSSCAST_ENTRYPOINT_REAL:-/opt/crosscast/bin/crosscast}
setpriv=${CROSSCAST_ENTRYPOINT_SETPRIV:-/usr/local/libexec/crosscast/setpriv}
status=${CROSSCAST_ENTRYPOINT_STATUS:-/proc/self/status}

CAP_NET_ADMIN=12 # linux/capability.h
CAP_NET_RAW=13   # linux/capability.h

field() { sed -n "s/^$1:[[:space:]]*//p" "$status"; }

euid=$(field Uid | awk '{ print $2 }')
bounding=$(field CapBnd)
ambient=$(field CapAmb)
no_new_privs=$(field NoNewPrivs)

caps=""
raise=""
has() { [ $(((0x${2:-0} >> $1) & 1)) -eq 1 ]; }
for cap in "$CAP_NET_RAW:net_raw" "$CAP_NET_ADMIN:net_admin"; do
    if has "${cap%%:*}" "$bounding"; then
        caps="${caps:+$caps,}+${cap#*:}"
        has "${cap%%:*}" "$ambient" || raise=yes
    fi
done

if [ "${euid:-0}" != 0 ] && [ -n "$raise" ] && [ -x "$setpriv" ]; then
    if [ "${no_new_privs:-0}" = 1 ]; then
        case "${1:-relay}" in
        relay | -*)
            echo "crosscast: no-new-privileges is set, so the container user gets no capabilities;" \
                "run as root (user: root) or drop no-new-privileges" >&2
            ;;
        esac
    else
        exec "$setpriv" --inh-caps "$caps" --ambient-caps "$caps" -- "$real" "$@"
    fi
fi
exec "$real" "$@"
