# akacdn — the two commands: `make run` and `make test`.
# Both install what they need first: a venv with the pinned Python packages, and (when
# root) the Debian packages the network and the tests use.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
DEBS   := dnsutils unbound pdns-recursor curl procps iproute2

# the Mininet lab (make lab, tests/lab) and the failover benchmark; no-install-recommends
# keeps Open vSwitch out (the lab uses Linux bridges)
LAB_DEBS := mininet bridge-utils nftables iputils-ping keepalived stress-ng

BENCH_STAMP := $(VENV)/.bench-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: help run test test-unit test-integration test-lab lab lab-deps deps venv clean bench bench-deps bench-dns bench-edge bench-edge-inprocess bench-failover bench-messaging bench-mapping bench-mapping-scale bench-steering bench-recovery bench-sureroute

help:
	@echo "make run    start the single-machine network (devnet) and print dig/curl lines to try"
	@echo "make test   install what is needed and run every test"
	@echo "make test-unit | test-integration | test-lab   run one kind of test"
	@echo "make lab    start the Mininet lab (regions, resolver, clients) with the daemons; LAB_ARGS='--agents'"
	@echo "make bench  run every benchmark (bench-dns, bench-edge, bench-edge-inprocess, bench-failover, bench-messaging, bench-mapping, bench-mapping-scale, bench-steering, bench-recovery, bench-sureroute); results in bench/results/"
	@echo "make bench-dns   dnsperf vs akacdn LLNS/TLNS, NSD, Knot on loopback (BENCH_ARGS='--seconds 5' ...)"
	@echo "make bench-edge  wrk vs akacdn edge, nginx proxy_cache, Varnish on loopback, + a cold stampede"
	@echo "make bench-edge-inprocess  the edge's own Python per plain hit (1 KiB, 100 KiB), in one process"
	@echo "make bench-failover  IP takeover outage: akacdn agent vs keepalived VRRPv3 in namespaces, + a 600 s soak under CPU load per system"
	@echo "make bench-messaging delivery and latency over loss x paths x NACK, a 1.3 MB map's time, one relay vs nats-server (namespaces)"
	@echo "make bench-mapping   how fast the maps follow a leader's death or cut-off, and an edge's death (namespaces)"
	@echo "make bench-mapping-scale  probe data to signed maps at 10,000 networks x 1,100 regions x 15,000 edges x 10,000 serials (one process)"
	@echo "make bench-steering  a region's probes turn slow or lossy -> the LLNS answers from another region, and back (devnet, nftables)"
	@echo "make bench-recovery  restart-to-serving per daemon, request of death to quarantine, a request-of-death storm (devnet)"
	@echo "make bench-sureroute misses across a cut peering with SureRoute on and off, origin offload with a parent tier (devnet, nftables)"
	@echo "make clean  remove the venv and run/ state"

# Debian packages: installed with apt-get when root and missing; otherwise say what is needed.
deps:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing Debian packages:$$missing (run as root, or: sudo apt-get install$$missing)"; exit 1; \
	  fi; \
	fi

lab-deps:
	@missing=""; for p in $(LAB_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing lab packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "the lab needs root and:$$missing (its tests are skipped without root)"; \
	  fi; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "akacdn needs Python 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP)

run: deps venv
	$(BIN)/akacdn devnet

test: deps lab-deps venv
	$(BIN)/ruff check akacdn tests bench deploy/mininet
	$(BIN)/ruff format --check akacdn tests bench deploy/mininet
	$(BIN)/pytest -q -p no:cacheprovider

test-unit: venv
	$(BIN)/pytest -q tests/unit

test-integration: deps venv
	$(BIN)/pytest -q tests/integration

test-lab: deps lab-deps venv
	$(BIN)/pytest -q -p no:cacheprovider tests/lab

lab: deps lab-deps venv
	$(BIN)/python deploy/mininet/lab.py $(LAB_ARGS)

# benchmarks: the venv plus the `bench` extra (matplotlib); each bench script installs its
# own Debian packages (dnsperf nsd knot; nginx varnish wrk) when root, keeping their services stopped
$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test,bench]'
	rm -f $(VENV)/.bench-*
	touch $@

bench-deps: deps $(BENCH_STAMP)

bench: bench-dns bench-edge bench-edge-inprocess bench-failover bench-messaging bench-mapping bench-mapping-scale bench-steering bench-recovery bench-sureroute

bench-dns: bench-deps
	$(BIN)/python -m bench.dns.run $(BENCH_ARGS)

bench-edge: bench-deps
	$(BIN)/python -m bench.edge.run $(BENCH_ARGS)

bench-edge-inprocess: bench-deps
	$(BIN)/python -m bench.edge.inprocess

bench-failover: bench-deps lab-deps
	$(BIN)/python -m bench.failover.run --soak 600 $(BENCH_ARGS)

bench-messaging: bench-deps lab-deps
	$(BIN)/python -m bench.messaging.run $(BENCH_ARGS)

bench-mapping: bench-deps lab-deps
	$(BIN)/python -m bench.mapping.run $(BENCH_ARGS)

bench-mapping-scale: bench-deps
	$(BIN)/python -m bench.mapping.scale $(BENCH_ARGS)

bench-steering: bench-deps lab-deps
	$(BIN)/python -m bench.mapping.steer $(BENCH_ARGS)

bench-recovery: bench-deps
	$(BIN)/python -m bench.recovery.run $(BENCH_ARGS)

bench-sureroute: bench-deps
	$(BIN)/python -m bench.sureroute.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) run *.egg-info
