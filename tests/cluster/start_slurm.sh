#!/usr/bin/env bash
# Start a one-node Slurm cluster on this machine (loopback only) for the cluster tests: munge, slurmctld, slurmd.
# Needs root and Debian's slurm-wlm and munge. Idempotent: a cluster that already answers `sinfo` is left alone.
set -euo pipefail
. "$(dirname "$0")/slurm_common.sh"

if sinfo -h >/dev/null 2>&1 && [ "$(sinfo -h -o %t | head -n1)" = idle ]; then
    echo "slurm: already up"; exit 0
fi
host=$(hostname -s)
cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 8 / 10 ))  # MiB, with room for the OS
state=/var/spool/slurm
mkdir -p /etc/slurm "$state/ctld" "$state/d" /var/log/slurm /run/munge /var/lib/munge /var/log/munge
grep -q "^127.0.0.1.*\b$host\b" /etc/hosts || echo "127.0.0.1 $host" >> /etc/hosts

cat > /etc/slurm/slurm.conf <<CONF
ClusterName=fdsl
SlurmctldHost=$host(127.0.0.1)
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
$(slurm_common_conf)
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
echo > /etc/slurm/cgroup.conf

if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 0400 /etc/munge/munge.key
pgrep -x munged >/dev/null || runuser -u munge -- munged 2>/dev/null || munged --force
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd

for _ in $(seq 60); do
    if [ "$(sinfo -h -o %t 2>/dev/null | head -n1)" = idle ]; then echo "slurm: up ($host, $cpus CPUs)"; exit 0; fi
    scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
    sleep 1
done
echo "slurm: the node did not come up; see /var/log/slurm/slurmctld.log and slurmd.log" >&2
sinfo -R >&2 || true
exit 1
