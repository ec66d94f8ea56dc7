# wsc — the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
DEVICES ?= 3
DEMO_FLAGS ?=

.PHONY: demo test deps build clean

## demo: install what is missing, build, provision $(DEVICES) simulated devices end to end
demo: deps build
	bin/wsc demo --devices $(DEVICES) $(DEMO_FLAGS)

## test: install what is missing, then the whole suite (gofmt, vet, staticcheck, race tests, qemu)
test: deps
	scripts/test

deps:
	@scripts/deps

build:
	go build -o bin/wsc ./cmd/wsc
	CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o bin/wsc-agent ./cmd/wsc-agent

clean:
	rm -rf bin
