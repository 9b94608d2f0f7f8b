#!/usr/bin/env bash
# The LVS NAT experiment with tunvs as the director. See README.md here.
# Usage: netns-lab/nat/run.sh            (as root; builds tunvs if needed)
#        TUNVS=/path/to/tunvs REQUESTS=30 netns-lab/nat/run.sh
. "$(dirname "$0")/../lib/common.sh"
lab_prologue netns-lab/nat
REQUESTS="${REQUESTS:-6}"
lab_init tvnat

say "Building the topology (namespaces prefixed $LAB_PREFIX)"
add_ns client; add_ns director; add_ns rs1; add_ns rs2
# client net 12.0.0.0/24
link_ns client eth0 director eth0
on client ip addr add 12.0.0.10/24 dev eth0
on client ip route add default via 12.0.0.1
on director ip addr add 12.0.0.1/24 dev eth0
# server LAN 192.168.168.0/24: a bridge in the director namespace
on director ip link add lan0 type bridge
on director ip link set lan0 up
on director ip addr add 192.168.168.50/24 dev lan0
link_ns rs1 eth0 director rs1p
link_ns rs2 eth0 director rs2p
on director ip link set rs1p master lan0
on director ip link set rs2p master lan0
on rs1 ip addr add 192.168.168.10/24 dev eth0
on rs1 ip route add default via 192.168.168.50
on rs2 ip addr add 192.168.168.20/24 dev eth0
on rs2 ip route add default via 192.168.168.50
on director sysctl -qw net.ipv4.ip_forward=1
httpd rs1 192.168.168.10 nginx1
httpd rs2 192.168.168.20 nginx2
wait_http director http://192.168.168.10/
wait_http director http://192.168.168.20/

say "Starting tunvs in the director namespace"
start_tunvs director --dev tunvs0
echo "tunvs: $(head -1 "$LAB_TMP/tunvs.log")"

requests() {
    for i in $(seq "$REQUESTS"); do
        on client curl -s --max-time 2 http://12.0.0.1/ || echo "request $i failed"
    done
}

say "rr: requests alternate"
run on director ipvsadm -A -t 12.0.0.1:80 -s rr
run on director ipvsadm -a -t 12.0.0.1:80 -r 192.168.168.10:80 -m
run on director ipvsadm -a -t 12.0.0.1:80 -r 192.168.168.20:80 -m
echo "--- rr responses"
requests
echo "--- end"
run on director ipvsadm -Ln

say "wrr: nginx1 weighted 2, nginx2 weighted 1"
run on director ipvsadm -E -t 12.0.0.1:80 -s wrr
run on director ipvsadm -e -t 12.0.0.1:80 -r 192.168.168.10:80 -m -w 2
run on director ipvsadm -e -t 12.0.0.1:80 -r 192.168.168.20:80 -m -w 1
echo "--- wrr responses"
requests
echo "--- end"
run on director ipvsadm -Ln

say "wlc: weighted least-connection (the default scheduler)"
run on director ipvsadm -E -t 12.0.0.1:80 -s wlc
echo "--- wlc responses"
requests
echo "--- end"
run on director ipvsadm -Ln
run on director ipvsadm -Ln --stats
run on director ipvsadm -Lnc
run on director "$TUNVS" drops

say "Tearing down"
