#!/usr/bin/env bash
# Start a two-node Slurm cluster on this machine for the two-node tests: each slurmd in its own network namespace
# (fdsl-n1 at 10.77.0.11, fdsl-n2 at 10.77.0.12, veth pairs on the bridge br-fdsl), slurmctld on the bridge's host
# side (10.77.0.1, port 7817), config in /etc/slurm-2n (use it with SLURM_CONF=/etc/slurm-2n/slurm.conf). Jobs'
# tasks run inside their node's namespace: only loopback and the bridge addresses. Needs root, munge (started by
# start_slurm.sh) and Debian's slurm-wlm; stop_two_nodes.sh takes it down. Idempotent.
set -euo pipefail
. "$(dirname "$0")/slurm_common.sh"
conf=/etc/slurm-2n
state=/var/spool/slurm-2n
mkdir -p $conf $state/ctld $state/fdsl-n1 $state/fdsl-n2 /var/log/slurm-2n
ip link show br-fdsl >/dev/null 2>&1 || { ip link add br-fdsl type bridge; ip addr add 10.77.0.1/24 dev br-fdsl; ip link set br-fdsl up; }
for i in 1 2; do
    ns=fdsl-n$i
    ip netns list | grep -q "^$ns" || ip netns add $ns
    if ! ip link show veth-n$i >/dev/null 2>&1; then
        ip link add veth-n$i type veth peer name eth0 netns $ns
        ip link set veth-n$i master br-fdsl up
        ip -n $ns addr add 10.77.0.1$i/24 dev eth0
        ip -n $ns link set eth0 up
        ip -n $ns link set lo up
    fi
    grep -q "fdsl-n$i" /etc/hosts || echo "10.77.0.1$i fdsl-n$i" >> /etc/hosts
done
cpus=1
cat > $conf/slurm.conf <<CONF
ClusterName=fdsl2
SlurmctldHost=$(hostname -s)(10.77.0.1)
SlurmctldPort=7817
SlurmdPort=7818
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/%n
SlurmctldPidFile=/run/slurmctld-2n.pid
SlurmdPidFile=/run/slurmd-2n-%n.pid
SlurmctldLogFile=/var/log/slurm-2n/slurmctld.log
SlurmdLogFile=/var/log/slurm-2n/slurmd-%n.log
$(slurm_common_conf)
NodeName=fdsl-n1 NodeAddr=10.77.0.11 CPUs=$cpus RealMemory=4000 State=UNKNOWN
NodeName=fdsl-n2 NodeAddr=10.77.0.12 CPUs=$cpus RealMemory=4000 State=UNKNOWN
PartitionName=two Nodes=fdsl-n1,fdsl-n2 Default=YES MaxTime=INFINITE State=UP
CONF
echo > $conf/cgroup.conf
export SLURM_CONF=$conf/slurm.conf
pgrep -f "slurmctld -f $conf" >/dev/null || slurmctld -f $conf/slurm.conf
for i in 1 2; do
    # nsenter, not `ip netns exec`, which remounts /sys without the cgroup tree slurmd reads.
    pgrep -f "slurmd -N fdsl-n$i" >/dev/null || nsenter --net=/run/netns/fdsl-n$i slurmd -N fdsl-n$i -f $conf/slurm.conf
done
for _ in $(seq 60); do
    [ "$(sinfo -h -o %t 2>/dev/null | sort -u)" = idle ] && { echo "slurm: two nodes up (fdsl-n1, fdsl-n2)"; exit 0; }
    scontrol update nodename=fdsl-n1,fdsl-n2 state=resume >/dev/null 2>&1 || true
    sleep 1
done
echo "slurm: the two nodes did not come up; see /var/log/slurm-2n/" >&2
exit 1
