#!/usr/bin/env bash
# Open MPI's remote-launch agent for the two-node test cluster, in place of ssh: "netns_rsh.sh HOST COMMAND..." runs
# COMMAND in the network namespace named HOST (fdsl-n1, fdsl-n2: see start_two_nodes.sh), as ssh would on HOST.
# Use: mpirun --mca plm_rsh_agent tests/cluster/netns_rsh.sh ...
host=$1
shift
exec nsenter --net=/run/netns/"$host" sh -c "$*"
