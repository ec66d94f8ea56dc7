# wsc — the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
DEVICES ?= 3
DEMO_FLAGS ?=
# scripts/deps installs Go into /usr/local/go when the machine has none (or an
# older one than go.mod's); put it first so this very run finds it.
export PATH := /usr/local/go/bin:$(PATH)
# Build tags (scripts/build-tags, shared with scripts/test): leave smallstep's
# unused database drivers (badger, bbolt, MySQL, PostgreSQL) and cloud KMS
# clients out of wsc — less to initialise at every start (docs/performance.md).
GO_TAGS := $(shell cat scripts/build-tags)

.PHONY: demo test deps build clean

## demo: install what is missing, build, provision $(DEVICES) simulated devices end to end
demo: deps build
	@echo "make: running the demo: $(DEVICES) simulated TPM devices (about 10–30 s)"
	bin/wsc demo --devices $(DEVICES) $(DEMO_FLAGS)

## test: install what is missing, then the whole suite (gofmt, vet, staticcheck, race tests, qemu)
test: deps
	@echo "make: running the whole test suite (20–40 minutes on 2 cores)"
	scripts/test

deps:
	@scripts/deps

# bin/wsc is the lean front (cmd/wsc/front): version, verify, qa and help run in
# it without the CA's start-up; every other command is handed to the full
# binary bin/wsc-station (cmd/wsc) next to it, which must be installed too.
build:
	@echo "make: building bin/wsc-station, the full station (first build: a few minutes — Go downloads and compiles ~700 packages; later builds: seconds)"
	go build -buildvcs=auto -tags '$(GO_TAGS)' -o bin/wsc-station ./cmd/wsc
	@echo "make: building bin/wsc, the lean front (verify, qa, version; hands other commands to bin/wsc-station)"
	go build -buildvcs=auto -o bin/wsc ./cmd/wsc/front
	@echo "make: building bin/wsc-agent (pure Go; first build: about a minute)"
	CGO_ENABLED=0 go build -buildvcs=auto -trimpath -ldflags='-s -w' -o bin/wsc-agent ./cmd/wsc-agent

clean:
	rm -rf bin
