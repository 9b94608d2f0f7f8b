#!/usr/bin/env bash
# The netns comparison bench: TCP throughput and small-UDP packet rate through
# tunvs (NAT over TUN) as a ratio of plain kernel forwarding measured in the
# same run, on the same topology. Needs root and iperf3 (installed if missing).
#
#   sudo benches/netns_compare.sh            # builds tunvs --release
#   sudo SECONDS_PER_RUN=5 REPS=2 benches/netns_compare.sh
#
# client 10.77.1.2 ── director (10.77.1.1 | 10.77.2.1) ── server 10.77.2.2
# kernel forward: client → 10.77.2.2 directly (routed by the director)
# tunvs NAT:      client → VIP 10.77.1.1:5201 → tunvs → 10.77.2.2:5201
set -euo pipefail
. "$(dirname "$0")/../netns-lab/lib/common.sh"
lab_prologue benches/netns_compare
# The bench also needs iperf3, and python3 to read its JSON.
for tool in iperf3 python3; do
    command -v "$tool" >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >/dev/null
done
T="${SECONDS_PER_RUN:-4}"
REPS="${REPS:-2}"
lab_init tvbench

add_ns cli; add_ns lb; add_ns srv
link_ns cli c0 lb l0
link_ns lb l1 srv s0
on cli ip addr add 10.77.1.2/24 dev c0
on cli ip route add default via 10.77.1.1
on lb ip addr add 10.77.1.1/24 dev l0
on lb ip addr add 10.77.2.1/24 dev l1
on srv ip addr add 10.77.2.2/24 dev s0
on srv ip route add default via 10.77.2.1
on lb sysctl -qw net.ipv4.ip_forward=1
# Two servers: 5201 behind tunvs, 5202 for kernel forwarding (tunvs steers the
# replies of 10.77.2.2:5201 into its device, so the baseline uses another port).
on srv iperf3 -s -D -B 10.77.2.2 -p 5201 >/dev/null
on srv iperf3 -s -D -B 10.77.2.2 -p 5202 >/dev/null
sleep 0.5

tcp() { on cli iperf3 -c "$1" -p "$2" -t "$T" -O 1 -J 2>/dev/null | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9,2))'; }
udp() { on cli iperf3 -c "$1" -p "$2" -u -l 64 -b 0 -t "$T" -J 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin)["end"]["sum"]; print(int(d["packets"]-d["lost_packets"])//'"$T"')'; }

results=()
run_mode() {
    local label="$1"; shift
    start_tunvs lb --dev tvb0 "$@"
    on lb "$TUNVS" adm -A -t 10.77.1.1:5201 -s rr
    on lb "$TUNVS" adm -a -t 10.77.1.1:5201 -r 10.77.2.2:5201 -m
    on lb "$TUNVS" adm -A -u 10.77.1.1:5201 -s rr
    on lb "$TUNVS" adm -a -u 10.77.1.1:5201 -r 10.77.2.2:5201 -m
    for rep in $(seq "$REPS"); do
        local kt tt ku tu
        kt=$(tcp 10.77.2.2 5202); tt=$(tcp 10.77.1.1 5201)
        ku=$(udp 10.77.2.2 5202); tu=$(udp 10.77.1.1 5201)
        results+=("$label rep$rep: TCP kernel ${kt} Gbit/s, tunvs ${tt} Gbit/s, ratio $(python3 -c "print(round($tt/$kt,3))") | UDP64 kernel ${ku} pps, tunvs ${tu} pps, ratio $(python3 -c "print(round($tu/max($ku,1),3))")")
    done
    kill -TERM "${LAB_PIDS[-1]}"; wait "${LAB_PIDS[-1]}" 2>/dev/null || true
    unset 'LAB_PIDS[-1]'
    rm -f "$LAB_SOCK"
}
run_mode "offload on " 
run_mode "offload off" --no-offload
say "Results (each tunvs run paired with a kernel-forward run just before it)"
printf '%s\n' "${results[@]}"
