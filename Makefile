# mxedge — `make run` starts a lab on loopback, `make test` installs the test peers and runs everything.
GO       ?= go
BIN      ?= bin/mxedge
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
DATE     ?= $(shell date -u -d @$${SOURCE_DATE_EPOCH:-$$(git log -1 --format=%ct 2>/dev/null || date +%s)} +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS  := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(DATE)
FUZZTIME ?= 10s
# staticcheck, pinned and run through the Go toolchain: a fresh machine needs nothing else.
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2

# Real peers the tests drive (Debian packages); installed when missing, never skipped.
PEER_PKGS := freeradius freeradius-utils radsecproxy eapoltest openssl iproute2 \
             systemd lintian file xz-utils init-system-helpers passwd prometheus bash-completion \
             rsyslog rsyslog-gnutls
PEER_BINS := freeradius radclient radsecproxy eapol_test openssl ip \
             systemd-analyze systemd-sysusers lintian file xz deb-systemd-helper useradd promtool \
             rsyslogd
# Peers that are files, not commands (bash-completion's library, which cobra's bash script needs).
PEER_FILES := /usr/share/bash-completion/bash_completion

.PHONY: all build test test-deps run bench lint fuzz clean deb

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) .

test-deps:
	@missing=""; for b in $(PEER_BINS); do \
	  command -v $$b >/dev/null 2>&1 || [ -x /usr/sbin/$$b ] || missing="$$missing $$b"; done; \
	for f in $(PEER_FILES); do [ -e $$f ] || missing="$$missing $$f"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing test peers (missing:$$missing)"; \
	  if [ "$$(id -u)" != 0 ]; then echo "make test: need root to apt-get install $(PEER_PKGS)" >&2; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(PEER_PKGS) >/dev/null || exit 1; \
	fi

test: test-deps lint
	$(GO) test -race -count=1 -timeout 20m ./...
	# Allocation counts are not exact under the race detector: the tests that skip there run again without it.
	$(GO) test -count=1 -run 'Allocations$$' ./survivability/

# make run RUN_ARGS=--free-ports: the lab on free ports when 1812/1813 are taken.
run: build
	$(BIN) run --dev $(RUN_ARGS)

bench: build test-deps
	MXEDGE_BIN=$(CURDIR)/$(BIN) $(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./bench/...

# gofmt, go vet, then staticcheck (checks chosen in staticcheck.conf).
lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(STATICCHECK) ./...

# Short runs of every fuzz target (the seed corpora already run in `make test`).
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list 'Fuzz.*' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "$$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg >/dev/null || exit 1; \
	  done; done

clean:
	rm -rf bin

include packaging/deb.mk
