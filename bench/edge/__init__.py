"""Edge cache benchmark: wrk against akacdn's edge, nginx proxy_cache and Varnish on
loopback, plus a cold-object stampede (python -m bench.edge.run)."""
