"""Failover benchmark: akacdn region agent vs keepalived VRRPv3 in a namespace lab."""
