# RumorDB: the two commands a fresh machine needs are `make up` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: up test lint typecheck unit bench clean experiments compose-secrets

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Start a local 3-node cluster on loopback (Ctrl-C stops it).
up: $(STAMP)
	$(BIN)/rumor cluster up -n 3

## Random secrets for docker-compose.yml in ./secrets (an existing file is kept). The
## directory is private; the files are readable by the container's user (uid 10001).
SECRETS_DIR ?= secrets
compose-secrets:
	@mkdir -p $(SECRETS_DIR) && chmod 700 $(SECRETS_DIR)
	@for name in cluster-secret admin-key reader-key; do \
		file=$(SECRETS_DIR)/$$name; \
		test -s $$file || $(PYTHON) -c 'import secrets; import sys; sys.stdout.write(secrets.token_urlsafe(32))' > $$file; \
		chmod 644 $$file; \
	done
	@echo "secrets in $(SECRETS_DIR)/: cluster-secret admin-key reader-key"

## ruff + mypy (strict on core/) + the whole pytest suite.
test: $(STAMP) lint typecheck
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check core live sim cli tests bench rumordb
	$(BIN)/ruff format --check core live sim cli tests bench rumordb

typecheck: $(STAMP)
	$(BIN)/mypy -p rumordb

## Micro- and system benchmarks (figures go to the closing notes, never asserted).
bench: $(STAMP)
	$(BIN)/python -m bench.core_bench
	$(MAKE) bench-sim bench-http bench-tls repair-bench bench-durability bench-cli bench-keyring bench-watch bench-ingest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

## Many keys per node (3 loopback nodes): RSS per key, write rate, scans, restarts.
## VOLUME_KEYS=10000000 make bench-volume for 10M (not run by default: minutes and GiBs).
.PHONY: bench-volume
bench-volume: $(STAMP)
	$(BIN)/python -m bench.volume_bench

## Random-key write cost in a core Node at 10k, 100k and 1M keys held (in process, CPU).
.PHONY: bench-random-writes
bench-random-writes: $(STAMP)
	$(BIN)/python -m bench.random_writes_bench

## Digest.set and a batch fold at 10k and 1M keys (REF=<checkout> alternates with it).
.PHONY: bench-digest
bench-digest: $(STAMP)
	$(BIN)/python -m bench.digest_bench $(if $(REF),--ref $(REF))

## The `rumor get/put/delete` start-up benchmark: median wall time of 20 runs each.
.PHONY: bench-cli
bench-cli: $(STAMP)
	$(BIN)/python -m bench.cli_bench --runs 20

## Watch latency: a change on node 1 -> its event on a watcher of node 3 (p50/p99).
.PHONY: bench-watch
bench-watch: $(STAMP)
	$(BIN)/python -m bench.watch_bench --changes 300

## The simulator: shipped experiments (reports in experiments/<name>/report) and its benchmark.
## `rumor sim run` exits 3 when a run does not converge; the report is still written.
.PHONY: bench-sim experiment-dissemination_vs_theory experiment-fanout_sweep \
	experiment-partition_heal experiment-churn experiment-clock_skew
SIM_JOBS ?= 2
experiments: experiment-dissemination_vs_theory experiment-fanout_sweep \
	experiment-partition_heal experiment-churn experiment-clock_skew

## Live against simulated (`rumor sim compare`): each starts local nodes on loopback.
## Reports in experiments/compare/<name>/, each with the calibration taken just before it
## (the wake-ups are the load of that moment); `make calibrate` re-measures the default.
COMPARE_SCENARIOS := steady partition_heal crash_restart lossy_links
.PHONY: experiments-compare calibrate
experiments-compare: $(STAMP)
	for name in $(COMPARE_SCENARIOS); do \
		mkdir -p experiments/compare/$$name && \
		$(BIN)/rumor sim calibrate --rounds 5 \
			--out experiments/compare/$$name/calibration.toml || exit 1; \
		$(BIN)/rumor sim compare experiments/compare/$$name.toml \
			--out experiments/compare/$$name --seeds 10 --runs 2 \
			--calibration experiments/compare/$$name/calibration.toml || exit 1; \
	done

calibrate: $(STAMP)
	$(BIN)/rumor sim calibrate --out sim/calibration.toml

experiment-dissemination_vs_theory: $(STAMP)
	$(BIN)/rumor sim dissemination experiments/dissemination_vs_theory/scenario.toml \
		--nodes 100,300,1000,3000,10000 --seeds 3 --jobs $(SIM_JOBS) \
		--out experiments/dissemination_vs_theory/report

experiment-fanout_sweep: $(STAMP)
	$(BIN)/rumor sim sweep experiments/fanout_sweep/scenario.toml \
		--param gossip.fanout=1,2,3,4,6 --seeds 3 --jobs $(SIM_JOBS) \
		--metric convergence_time_s --metric dissemination_s.p90 \
		--metric messages_sent --metric bytes_sent \
		--out experiments/fanout_sweep/report

experiment-partition_heal: $(STAMP)
	$(BIN)/rumor sim run experiments/partition_heal/scenario.toml \
		--out experiments/partition_heal/report || [ $$? -eq 3 ]

experiment-churn: $(STAMP)
	$(BIN)/rumor sim run experiments/churn/scenario.toml \
		--out experiments/churn/report || [ $$? -eq 3 ]

experiment-clock_skew: $(STAMP)
	$(BIN)/rumor sim sweep experiments/clock_skew/scenario.toml \
		--param clocks.skew_ms=0,10,100,1000,5000 --seeds 3 --jobs $(SIM_JOBS) \
		--metric lww_inversions --metric causal_writes_lost --metric writes.causal \
		--metric convergence_time_s \
		--out experiments/clock_skew/report

bench-sim: $(STAMP)
	$(BIN)/python -m bench.sim_bench --nodes 10000
	$(BIN)/python -m bench.sim_bench --nodes 100000

## A million simulated nodes (real core): minutes of CPU and GiBs of memory, so apart.
.PHONY: bench-sim-1m
bench-sim-1m: $(STAMP)
	$(BIN)/python -m bench.sim_bench --nodes 1000000

## Bulk ingest: keys/s through POST /kv batches into a 3-node cluster, vs single PUTs.
.PHONY: bench-ingest
bench-ingest: $(STAMP)
	$(BIN)/python -m bench.ingest_bench $(ARGS)

## Where one node's share of a batch ingest goes, stage by stage (in process, no HTTP).
.PHONY: bench-ingest-stages
bench-ingest-stages: $(STAMP)
	$(BIN)/python -m bench.ingest_stages $(ARGS)

## HTTP benchmark: bare FastAPI vs a 3-node cluster (wrk pinned to CPU 1, servers to CPU 0).
.PHONY: bench-http
bench-http: $(STAMP)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python -m bench.http_bench

## Server CPU per request (utime+stime / requests) of one node of this tree against the
## checkouts in REF (each with its own .venv), wrk rounds alternating; METHOD=GET|PUT.
.PHONY: bench-request-cost
bench-request-cost: $(STAMP)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python -m bench.request_cost $(REF) . --method $(or $(METHOD),GET)

## Python opcodes one warm GET /kv/{key} executes inside the app (no server), by function;
## LINES=1 by line; COLD=1 the read right after a write, MISS=1 a key never read; PUT=1
## warm PUTs instead, BATCH=16 at once (one group commit, the storage thread counted). Stable
## under any load, unlike wall or CPU time.
.PHONY: bench-get-opcodes
bench-get-opcodes: $(STAMP)
	$(BIN)/python -m bench.get_opcodes --top 40 $(if $(LINES),--lines) $(if $(COLD),--cold) $(if $(MISS),--miss) $(if $(PUT),--put --batch $(or $(BATCH),16))

## TLS cost: one cluster with TLS, one without, alternating wrk rounds (ratios TLS/plain).
.PHONY: bench-tls
bench-tls: $(STAMP)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python -m bench.tls_bench

## Keyring: DELETE /admin/keys/{name} on one node to 401 on both others (p50, max of 20).
.PHONY: bench-keyring
bench-keyring: $(STAMP)
	$(BIN)/python -m bench.keyring_bench --tries 20

## The multi-host fault ring (root: network namespaces; rewrites docs/faults-report.md)
## and the anti-entropy repair figures (10 000 keys, 1% differing).
multihost: $(STAMP)
	$(BIN)/python -m pytest -m multihost tests/multihost

repair-bench: $(STAMP)
	$(BIN)/python -m bench.repair_bench both

## Live repair at scale (issue 14): 3 loopback nodes with REPAIR_KEYS (default 1M) keys,
## 1% new keys missed by one cut-off node: heal to every key held, bytes on the wire
## against the missing records' own (~10 min at 1M, ~2 GiB).
REPAIR_KEYS ?= 1000000
.PHONY: repair-live
repair-live: $(STAMP)
	$(BIN)/python -m bench.repair_live --keys $(REPAIR_KEYS)

## Full scans (issue 14): SCAN_KEYS (default 10M) keys in process (Node.plan_list pages)
## and through GET /kv pages on one live node started on a pre-written data dir, with the
## stall probe (~15 min and ~5 GiB at 10M).
SCAN_KEYS ?= 10000000
.PHONY: bench-scan
bench-scan: $(STAMP)
	$(BIN)/python -m bench.scan_bench both --keys $(SCAN_KEYS)

## Acknowledged writes lost per kill -9: batch vs sync on one node (~1 min), then the
## crashed node of a 3-node cluster before and after repair, memory mode too (~2 min).
.PHONY: bench-durability
bench-durability: $(STAMP)
	$(BIN)/python -m bench.durability_bench --rounds 5 --rate 2000
	$(BIN)/python -m bench.durability_bench --nodes 3 --modes batch,sync,memory --rounds 3 --rate 2000

## The containers ring alone (root): Podman runs the real Dockerfile and docker-compose.yml.
containers: $(STAMP)
	$(BIN)/python -m pytest tests/containers -v

## Bounded growth (issue 15; root: namespaces): a member dead for good, 10 000 deletes,
## forget / reap, then 100 deletes/s; live (5 nodes) and sim; writes
## experiments/bounded_growth/report.md and growth.png (~10 min).
.PHONY: bench-growth
bench-growth: $(STAMP)
	$(BIN)/python -m bench.growth_bench all
