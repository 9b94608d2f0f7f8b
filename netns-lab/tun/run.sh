#!/usr/bin/env bash
# The LVS tunnelling (VS/TUN) experiment with tunvs as the director and
# `tunvs realserver tunnel` on the real servers. See README.md here.
# Usage: netns-lab/tun/run.sh            (as root; builds tunvs if needed)
#        TUNVS=/path/to/tunvs REQUESTS=10 netns-lab/tun/run.sh
. "$(dirname "$0")/../lib/common.sh"
lab_prologue netns-lab/tun
REQUESTS="${REQUESTS:-6}"
UPLOAD="${UPLOAD:-2000000}"
VIP=172.20.100.1
lab_init tvtun

# Start `tunvs realserver tunnel --vip $VIP ARGS…` in namespace $1 and wait
# (bounded) until it has created its device and owns the VIP.
start_realserver() {
    local n="$1"; shift
    local log="$LAB_TMP/realserver-$n.log"
    ip netns exec "$(ns "$n")" "$TUNVS" realserver tunnel --vip "$VIP" "$@" >"$log" 2>&1 &
    LAB_PIDS+=($!)
    for _ in $(seq 100); do
        grep -q decapsulating "$log" && { sed 's/^/  /' "$log"; return 0; }
        kill -0 "${LAB_PIDS[-1]}" 2>/dev/null || break
        sleep 0.05
    done
    echo "lab: the real-server helper in $n did not start:" >&2
    cat "$log" >&2
    return 1
}

say "Building the topology (namespaces prefixed $LAB_PREFIX)"
add_ns client; add_ns router; add_ns director; add_ns rs1; add_ns rs2
# client net 172.20.1.0/24
link_ns client eth0 router eth0
on client ip addr add 172.20.1.10/24 dev eth0
on client ip route add default via 172.20.1.1
on router ip addr add 172.20.1.1/24 dev eth0
# director net 172.20.2.0/24
link_ns director eth0 router eth1
on director ip addr add 172.20.2.10/24 dev eth0
on director ip route add default via 172.20.2.1
on router ip addr add 172.20.2.1/24 dev eth1
# server LAN 172.20.3.0/24, MTU 1400: a bridge in the router namespace
on router ip link add lan0 type bridge
on router ip link set lan0 mtu 1400 up
on router ip addr add 172.20.3.1/24 dev lan0
for i in 1 2; do
    link_ns "rs$i" eth0 router "rs${i}p"
    on router ip link set "rs${i}p" mtu 1400 master lan0
    on "rs$i" ip link set eth0 mtu 1400
    on "rs$i" ip addr add "172.20.3.1$i/24" dev eth0
    on "rs$i" ip route add default via 172.20.3.1
done
# The router sends VIP traffic to the director. Replies come back from the
# server LAN with the VIP as source: no reverse-path filter on the router.
on router sysctl -qw net.ipv4.ip_forward=1
on router sysctl -qw net.ipv4.conf.all.rp_filter=0
on router ip route add "$VIP/32" via 172.20.2.10

# The value of `NAME` in a /proc/net/snmp group of namespace $1.
snmp() {
    on "$1" awk -v g="$2:" -v k="$3" \
        '$1 == g && !h { for (i = 2; i <= NF; i++) c[$i] = i; h = 1; next }
         $1 == g { print $c[k]; exit }' /proc/net/snmp
}

say "Real servers: user-space decapsulation (no ipip/fou module needed)"
printf '$ on rs1 tunvs realserver tunnel --vip %s --type ipip --director 172.20.2.10 &\n' "$VIP"
start_realserver rs1 --type ipip --director 172.20.2.10
RS_PIDS=("${LAB_PIDS[-1]}")
printf '$ on rs2 tunvs realserver tunnel --vip %s --type gue --port 6080 &\n' "$VIP"
start_realserver rs2 --type gue --port 6080
RS_PIDS+=("${LAB_PIDS[-1]}")
for i in 1 2; do
    httpd "rs$i" "$VIP" "rs$i"
    # A byte counter for the upload: replies with the number of bytes received.
    ip netns exec "$(ns "rs$i")" socat -T 10 "TCP4-LISTEN:9000,bind=$VIP,reuseaddr,fork" \
        SYSTEM:'wc -c' >/dev/null 2>&1 &
    LAB_PIDS+=($!)
done
run on rs1 ip -br addr show dev tunvs-rs0

say "Starting tunvs in the director namespace"
on director ip addr add "$VIP/32" dev lo
start_tunvs director --dev tunvs0
head -1 "$LAB_TMP/tunvs.log"
run on director ipvsadm -A -t "$VIP:80" -s rr
run on director ipvsadm -a -t "$VIP:80" -r 172.20.3.11 -i
run on director ipvsadm -a -t "$VIP:80" -r 172.20.3.12 -i --tun-type gue --tun-port 6080 --tun-csum
run on director ipvsadm -A -t "$VIP:9000" -s rr
run on director ipvsadm -a -t "$VIP:9000" -r 172.20.3.11 -i
run on director ipvsadm -a -t "$VIP:9000" -r 172.20.3.12 -i --tun-type gue --tun-port 6080 --tun-csum
wait_http client "http://$VIP/"

say "rr: requests alternate between the IPIP and the GUE real server"
echo "--- rr responses"
for i in $(seq "$REQUESTS"); do
    on client curl -s --max-time 2 "http://$VIP/" || echo "request $i failed"
done
echo "--- end"
run on director ipvsadm -Ln
run on director ipvsadm -Ln --tun-info
run on director ipvsadm -Ln --stats
run on director ipvsadm -Lnc
run on director ipvsadm -Sn

say "Upload $UPLOAD bytes: the server LAN has MTU 1400, the router says so"
echo "--- upload"
head -c "$UPLOAD" /dev/zero | on client socat -t 10 -T 20 - "TCP:$VIP:9000,shut-down"
echo "--- end"
echo "router: ICMP destination-unreachable (fragmentation needed) sent to the director: $(snmp router Icmp OutDestUnreachs)"
echo "client: path MTU toward the VIP: $(on client ip route get "$VIP" | grep -o 'mtu [0-9]*' || echo '(none cached)')"
run on director "$TUNVS" drops

say "What the real servers' helpers counted (SIGUSR1)"
reports() { grep -c '^drop_not_director' "$LAB_TMP/realserver-rs$1.log" || true; }
before=("$(reports 1)" "$(reports 2)")
for pid in "${RS_PIDS[@]}"; do kill -USR1 "$pid"; done
# Bounded wait until each helper has printed one more complete report.
for _ in $(seq 50); do
    [ "$(reports 1)" -gt "${before[0]}" ] && [ "$(reports 2)" -gt "${before[1]}" ] && break
    sleep 0.1
done
for i in 1 2; do
    echo "rs$i:"
    # The last report: received … drop_not_director; zero drop counters left out.
    tac "$LAB_TMP/realserver-rs$i.log" | sed -n '/^drop_not_director/,/^received/p' | tac |
        grep -Ev '^drop_[a-z_]+ +0$' | sed 's/^/  /'
done

say "Tearing down"
