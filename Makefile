# bbsim: `make run` builds and starts everything; `make test` runs every test.
GO        ?= go
BIN       := bin/bbsim
# Debian packages the tests drive as real peers.
TEST_DEBS := curl tmux python3 dovecot-imapd dovecot-pop3d dovecot-lmtpd postgresql
TEST_CMDS := curl tmux python3 dovecot
SUDO      := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
FUZZTIME  ?= 30s

.PHONY: all build run test test-deps bench-deps vet fmt-check bench fuzz clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/bbsim

run: build
	$(BIN) run $(ARGS)

# Installs the outside peers the tests use when any is missing (needs apt-get).
test-deps:
	@missing=""; for c in $(TEST_CMDS); do command -v $$c >/dev/null 2>&1 || [ -x /usr/sbin/$$c ] || missing="$$missing $$c"; done; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
		echo "installing test peers (missing:$$missing)"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(TEST_DEBS) >/dev/null; \
	fi

# wrk drives BenchmarkRIMEndToEndWrk as an outside push initiator.
bench-deps: test-deps
	@command -v wrk >/dev/null 2>&1 || { echo "installing wrk"; $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends wrk >/dev/null; }

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt wants to change:"; echo "$$out"; exit 1; fi

# Fuzz targets run their seed corpora here; `make fuzz` runs them for real.
test: test-deps fmt-check vet build
	PATH="$$PATH:/usr/sbin" $(GO) test -race -timeout 8m ./...

bench: bench-deps build
	$(GO) test -run '^$$' -bench . -benchtime 2s ./...
	$(BIN) bench

fuzz:
	@for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
			echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; \
	done

clean:
	rm -rf bin
