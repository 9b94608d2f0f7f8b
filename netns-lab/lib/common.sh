# Shared helpers for the tunvs netns labs. Source it; it defines:
#   lab_prologue NAME    root check, install what is missing, build tunvs
#                        unless $TUNVS names a binary
#   lab_init PREFIX      unique names, the cleanup trap
#   ns NAME              the namespace's full name
#   on NAME CMD…         run CMD inside namespace NAME
#   add_ns NAME          create namespace NAME (lo up), registered for cleanup
#   link_ns A IFA B IFB  a veth pair between namespaces A and B
#   start_tunvs NS ARGS  start the daemon in NS (log in $LAB_TMP), wait for its socket
#   httpd NS ADDR NAME   a tiny HTTP server answering "this is NAME"
# Everything is removed on exit, Ctrl-C or failure.

set -euo pipefail

# The repository's top directory (this file is netns-lab/lib/common.sh).
LAB_TOP="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

lab_prologue() {
    if [ "$(id -u)" != 0 ]; then
        echo "$1: needs root (network namespaces): sudo $0" >&2
        exit 1
    fi
    "$LAB_TOP/netns-lab/deps.sh"
    if [ -z "${TUNVS:-}" ]; then
        (cd "$LAB_TOP" && cargo build --release --quiet)
        TUNVS="$LAB_TOP/target/release/tunvs"
    fi
}

lab_init() {
    LAB_PREFIX="${1}$(printf '%04x' $((RANDOM)))"
    LAB_TMP="$(mktemp -d "/tmp/${LAB_PREFIX}.XXXX")"
    LAB_NS=()
    LAB_PIDS=()
    LAB_SOCK="$LAB_TMP/tunvs.sock"
    export TUNVS_CONTROL="$LAB_SOCK"
    # `ipvsadm` in this lab is tunvs itself, through a link of that name.
    mkdir -p "$LAB_TMP/bin"
    ln -s "$TUNVS" "$LAB_TMP/bin/ipvsadm"
    export PATH="$LAB_TMP/bin:$PATH"
    trap lab_cleanup EXIT
    trap 'exit 130' INT TERM
}

lab_cleanup() {
    local rc=$?
    set +e
    for pid in "${LAB_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${LAB_PIDS[@]}"; do
        # Bounded wait: the daemon removes its rules on SIGTERM.
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
    done
    for n in "${LAB_NS[@]}"; do
        ip netns pids "$n" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
        ip netns del "$n" 2>/dev/null
    done
    rm -rf "$LAB_TMP"
    echo "lab: removed namespaces ${LAB_NS[*]:-} and $LAB_TMP"
    exit $rc
}

ns() { echo "${LAB_PREFIX}-$1"; }

on() {
    local n="$1"; shift
    ip netns exec "$(ns "$n")" "$@"
}

add_ns() {
    ip netns add "$(ns "$1")"
    LAB_NS+=("$(ns "$1")")
    on "$1" ip link set lo up
}

link_ns() {
    # veth names are per-namespace, so short fixed names are fine.
    ip link add "$2" netns "$(ns "$1")" type veth peer name "$4" netns "$(ns "$3")"
    on "$1" ip link set "$2" up
    on "$3" ip link set "$4" up
}

start_tunvs() {
    local n="$1"; shift
    ip netns exec "$(ns "$n")" "$TUNVS" run --control "$LAB_SOCK" "$@" \
        >"$LAB_TMP/tunvs.log" 2>&1 &
    LAB_PIDS+=($!)
    for _ in $(seq 100); do
        [ -S "$LAB_SOCK" ] && return 0
        kill -0 "${LAB_PIDS[-1]}" 2>/dev/null || break
        sleep 0.05
    done
    echo "lab: tunvs did not start:" >&2
    cat "$LAB_TMP/tunvs.log" >&2
    return 1
}

httpd() {
    # One short HTTP/1.0 answer per connection.
    local n="$1" addr="$2" name="$3"
    local reply="$LAB_TMP/reply-$name.sh"
    # Read the request head first, so closing never resets the connection.
    cat >"$reply" <<EOS
#!/bin/sh
cr=\$(printf '\\r')
while IFS= read -r l; do l=\${l%\$cr}; [ -z "\$l" ] && break; done
printf 'HTTP/1.0 200 OK\\r\\nContent-Type: text/plain\\r\\n\\r\\nthis is $name\\n'
EOS
    chmod +x "$reply"
    ip netns exec "$(ns "$n")" socat -T 5 "TCP4-LISTEN:80,bind=$addr,reuseaddr,fork" "EXEC:$reply" \
        >/dev/null 2>&1 &
    LAB_PIDS+=($!)
}

wait_http() {
    # Wait (bounded) until a server answers from inside namespace $1.
    local n="$1" url="$2"
    for _ in $(seq 50); do
        on "$n" curl -s --max-time 1 "$url" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "lab: $url did not answer" >&2
    return 1
}

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
