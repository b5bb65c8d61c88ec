"""Cluster runs: which launcher started the processes (environments) and how a fit runs on it (launch)."""
