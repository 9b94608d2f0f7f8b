#!/usr/bin/env bash
# The LVS direct-routing (DR) experiment with tunvs as the director, in tap
# mode. See README.md here.
# Usage: netns-lab/dr/run.sh            (as root; builds tunvs if needed)
#        TUNVS=/path/to/tunvs REQUESTS=10 netns-lab/dr/run.sh
. "$(dirname "$0")/../lib/common.sh"
lab_prologue netns-lab/dr
REQUESTS="${REQUESTS:-6}"
VIP=203.0.113.80
lab_init tvdr
# realserver dr keeps its record here, not in /run/tunvs.
export TUNVS_STATE_DIR="$LAB_TMP/state"

say "Building the topology (namespaces prefixed $LAB_PREFIX)"
add_ns client; add_ns router; add_ns director; add_ns rs1; add_ns rs2
# client net 198.51.100.0/24
link_ns client eth0 router eth0
on client ip addr add 198.51.100.10/24 dev eth0
on client ip route add default via 198.51.100.1
on router ip addr add 198.51.100.1/24 dev eth0
# server LAN 192.168.50.0/24: the switch is a bridge in the router namespace
on router ip link add lan0 type bridge
on router ip link set lan0 up
on router ip addr add 192.168.50.1/24 dev lan0
for h in director rs1 rs2; do
    link_ns "$h" eth0 router "p-$h"
    on router ip link set "p-$h" master lan0
done
on router sysctl -qw net.ipv4.ip_forward=1
# The router sends the VIP to the director's address (the DIP).
run on router ip route add "$VIP/32" via 192.168.50.2 dev lan0
# Real servers: their default gateway is the router, not the director.
on rs1 ip addr add 192.168.50.11/24 dev eth0
on rs1 ip route add default via 192.168.50.1
on rs2 ip addr add 192.168.50.12/24 dev eth0
on rs2 ip route add default via 192.168.50.1
# The director host: its LAN port is bridged with tunvs's TAP; the kernel
# side has no address at all, tunvs is the director on the LAN.
on director ip link add br0 type bridge
on director ip link set eth0 master br0
on director ip link set br0 up

say "Real servers: the LVS-DR settings (VIP on lo, ARP and rp_filter)"
run on rs1 "$TUNVS" realserver dr --vip "$VIP"
run on rs2 "$TUNVS" realserver dr --vip "$VIP"
httpd rs1 "$VIP" rs1
httpd rs2 "$VIP" rs2

say "Starting tunvs in the director namespace (tap mode, DIP 192.168.50.2)"
start_tunvs director --device tap --dev tunvs0 --bridge br0 --address 192.168.50.2/24 \
    --gateway 192.168.50.1
head -1 "$LAB_TMP/tunvs.log"
run on director ipvsadm -A -t "$VIP:80" -s rr
run on director ipvsadm -a -t "$VIP:80" -r 192.168.50.11:80 -g
run on director ipvsadm -a -t "$VIP:80" -r 192.168.50.12:80 -g
wait_http client "http://$VIP/"

say "rr: requests alternate between the real servers"
echo "--- dr responses"
for i in $(seq "$REQUESTS"); do
    on client curl -s --max-time 2 "http://$VIP/" || echo "request $i failed"
done
echo "--- end"

say "The director saw the requests only: OutPkts stays 0"
run on director ipvsadm -Ln --stats
run on director ipvsadm -Lnc
echo "--- tunvs drops"
on director "$TUNVS" drops | awk '$2 != 0'
echo "--- end"
say "Where the replies went: from the real servers straight to the router"
run on rs1 ip route get 198.51.100.10 from "$VIP"

say "Undoing the real-server settings"
run on rs1 "$TUNVS" realserver dr --vip "$VIP" --undo
run on rs2 "$TUNVS" realserver dr --vip "$VIP" --undo

say "Tearing down"
