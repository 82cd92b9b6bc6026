# The two commands of the README:
#   make run   set up what is missing, build, start `kube-coder serve`
#   make test  set up what is missing, check formatting and lints, run every test
#              (the cluster tests start a real control plane built from Go modules)
# ARGS passes extra flags to serve: make run ARGS="--auth basic --htpasswd-file ~/.htpasswd"

CARGO ?= cargo
ARGS ?=
# Prints how long each stage of make test took.
STAGE = hack/stage

.PHONY: run test setup setup-test web build lint fmt bench clean cluster cluster-bin fuzz images

setup:
	@hack/setup.sh run

setup-test:
	@hack/setup.sh test

# The dashboard app (web/dist), embedded into the binary at compile time.
web: setup
	@hack/build-web.sh run

build: setup web
	$(CARGO) build --release -p kube-coder

run: build
	./target/release/kube-coder serve $(ARGS)

# The Go-built control plane and login proxy (a no-op once cached). First in
# `make test`: its build needs the most scratch disk (about 8 GB, freed when
# done), best before target/ grows.
cluster-bin: setup-test
	@$(STAGE) "Go-built cluster binaries" hack/build.sh

# The container images (images/), as OCI archives in target/images/, built
# without a Docker daemon from Debian packages, npm and our binaries.
images: cluster-bin web
	images/build.sh

lint: setup-test
	@$(STAGE) "dashboard build and checks" hack/build-web.sh test
	@$(STAGE) "rustfmt" $(CARGO) fmt --all -- --check
	@$(STAGE) "clippy" $(CARGO) clippy --workspace --all-targets -- -D warnings

# Every Rust test is built and run with one package selection (--workspace):
# a narrower one (-p) unifies dependency features differently and builds
# many dependencies a second time (minutes, and gigabytes of target/). The
# test build also leaves target/debug/kube-coder for the browser tests.
# The images for the test cluster's real node are built from the debug
# binaries the test build just made, with fast compression.
# --no-fail-fast: one failing test binary does not hide the others' results
# (a CI run then shows every failure at once).
test: cluster-bin lint
	@$(STAGE) "test build" $(CARGO) test --workspace --no-run
	@$(STAGE) "images" env PROFILE=debug GZIP_LEVEL=1 images/build.sh
	@$(STAGE) "vitest" sh -c 'cd web && npm test --silent'
	@$(STAGE) "browser tests" sh -c 'cd web && npm run --silent e2e'
	@eval "$$(hack/tools-env)" && $(STAGE) "Rust tests (cluster up, tests, down)" hack/with-cluster $(CARGO) test --workspace --no-fail-fast

# The test control plane alone: hack/cluster up|down|env (see hack/README.md).
cluster: setup-test
	hack/cluster up

fmt:
	$(CARGO) fmt --all

# Benchmarks print figures; they assert nothing. See bench/README.md.
bench: setup
	bench/run.sh
	bench/files.sh
	bench/hooks.sh
	bench/dashboard.sh
	hack/with-cluster bench/operator.sh
	PROFILE=debug images/build.sh && hack/with-cluster bench/node.sh
	hack/with-cluster bench/builds.sh

clean:
	$(CARGO) clean

# Fuzz the parsers of untrusted input (cargo-fuzz; stable Rust via RUSTC_BOOTSTRAP).
FUZZ_SECS ?= 60
fuzz:
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	cd fuzz && for t in ssrf_url user_path webhook_template; do \
	  RUSTC_BOOTSTRAP=1 cargo fuzz run $$t -- -max_total_time=$(FUZZ_SECS) || exit 1; done
