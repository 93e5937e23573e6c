"""DNS benchmark: dnsperf against akacdn's LLNS and TLNS, NSD and Knot DNS on loopback.

Run it with `make bench-dns` or `python -m bench.dns.run`; see bench/README.md.
"""
