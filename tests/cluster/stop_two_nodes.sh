#!/usr/bin/env bash
# Take down what start_two_nodes.sh started: its daemons, the namespaces, the bridge and its /etc/hosts lines.
set -uo pipefail
pkill -f "slurmd -N fdsl-n" ; pkill -f "slurmctld -f /etc/slurm-2n"
sleep 1
for i in 1 2; do ip netns del fdsl-n$i 2>/dev/null; done
ip link del br-fdsl 2>/dev/null
sed -i '/ fdsl-n[12]$/d' /etc/hosts
echo "slurm: two-node cluster stopped"
