# `make deb`: reproducible .deb packages for amd64 and arm64 in $(DEB_OUT). Included by the Makefile,
# which defines GO, VERSION, COMMIT and LDFLAGS. See docs/install.md.
DEB_ARCHES ?= amd64 arm64
DEB_OUT    ?= bin/deb
# Debian versions start with a digit: v1.2.3 -> 1.2.3, v1.2.3-4-gabc -> 1.2.3+4.gabc, an untagged
# commit abc1234 -> 0.0.0+gitabc1234.
DEB_VERSION ?= $(shell echo '$(VERSION)' | sed -E '/^v?[0-9]+\.[0-9]/!s/^/0.0.0+git/; s/^v//; s/-/+/; s/-/./g')
# Every mtime in the package and the build date stamped into the binary: the last commit's time.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
export SOURCE_DATE_EPOCH

.PHONY: deb

# Man pages and completions come from a binary that runs here (build-deb.sh's DOCGEN): $(BIN).
deb: build
	@for arch in $(DEB_ARCHES); do \
	  CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(DEB_OUT)/$$arch/mxedge . || exit 1; \
	  DOCGEN=$(BIN) sh packaging/build-deb.sh $$arch $(DEB_OUT)/$$arch/mxedge '$(DEB_VERSION)-1' $(DEB_OUT) || exit 1; \
	done
