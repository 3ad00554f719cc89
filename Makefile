# AUREN: the two commands are `make demo` and `make test` (see README.md).
SHELL := /bin/bash
.DEFAULT_GOAL := help

.PHONY: help test test-compat demo services-up services-down cluster-up cluster-down crds bench profile bench-gates lint images image-dockerfile

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-17s %s\n", $$1, $$2}'

test: ## install what the tests need, start services, run every tier, stop services
	bash scripts/test.sh

test-compat: ## the chart, blue/green, rollback and canary on Kubernetes 1.34 (the oldest minor supported)
	bash scripts/test-compat.sh

demo: ## run the main job end to end on this machine
	bash scripts/demo.sh

lint: ## rustfmt, clippy, no import circles between modules
	AUREN_TIERS=lint bash scripts/test.sh

services-up: ## start PostgreSQL and the broker for manual work (state in $$AUREN_STATE)
	bash scripts/deps.sh && bash scripts/postgres.sh start && bash scripts/broker.sh start

services-down: ## stop what services-up started
	bash scripts/broker.sh stop; bash scripts/postgres.sh stop

cluster-up: ## start the local Kubernetes 1.37.2 (AUREN_K8S_MINOR=1.34: 1.34.12) with a real node (kubelet, kube-proxy, containerd, runc)
	bash e2e/cluster/up.sh

images: ## build the operator, runtime and pause images from the Dockerfile (buildah, no Docker engine)
	bash scripts/images.sh

image-dockerfile: ## buildah bud of the unchanged Dockerfile, cargo inside (a second release build, not in make test)
	bash scripts/dockerfile-build.sh

cluster-down: ## stop the local cluster
	bash e2e/cluster/down.sh

crds: ## regenerate crds/ (and the chart's copy, docs/crd-reference.md) from the Rust types
	source scripts/lib.sh && cargo run -q -p auren-operator --bin crdgen > crds/aurenruntime.yaml && cp crds/aurenruntime.yaml charts/auren-operator/crds/aurenruntime.yaml && python3 scripts/crd-reference.py > docs/crd-reference.md

bench: ## runtime benchmarks, one table (BENCH_AGAINST=<ref> adds a before column; docs/benchmarks.md)
	bash scripts/bench.sh

profile: ## flamegraphs of the runtime's hot paths into docs/flamegraphs/, and where their CPU goes
	BENCH_ONLY=profile bash scripts/bench.sh

bench-gates: ## readiness-gate follow time over 100 broker-outage reopenings (docs/reliability.md)
	bash scripts/bench-gates.sh
