# The two commands of the README:
#   make run   set up what is missing, build, start `kube-coder serve`
#   make test  set up what is missing, check formatting and lints, run every test
# ARGS passes extra flags to serve: make run ARGS="--auth basic --htpasswd-file ~/.htpasswd"

CARGO ?= cargo
ARGS ?=

.PHONY: run test setup build lint fmt bench clean

setup:
	@hack/setup.sh

build: setup
	$(CARGO) build --release -p kube-coder

run: build
	./target/release/kube-coder serve $(ARGS)

lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test: lint
	$(CARGO) test --workspace

fmt:
	$(CARGO) fmt --all

# Benchmarks print figures; they assert nothing. See bench/README.md.
bench: setup
	bench/run.sh
	bench/files.sh

clean:
	$(CARGO) clean
