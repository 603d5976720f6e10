# bbsim: `make run` builds and starts everything; `make test` runs every test.
GO        ?= go
BIN       := bin/bbsim
# Debian packages the tests drive as real peers, one line per area so that each
# area's peers are listed once, where its tests are.
TEST_DEBS := curl tmux python3 postgresql
# mail: Dovecot as a real server
TEST_DEBS += dovecot-imapd dovecot-pop3d dovecot-lmtpd
# mail: the clients people sync, fetch and send with
TEST_DEBS += swaks libnet-ssleay-perl isync offlineimap fetchmail getmail6
# push: real push initiators (PHP with curl as the BIS clients use it, Kannel's test_ppg)
TEST_DEBS += php-cli php-curl kannel-extras
# protocol clients for every server (DNS)
TEST_DEBS += bind9-dnsutils
SUDO      := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
FUZZTIME  ?= 30s

.PHONY: all build install run test test-deps bench-deps bench-mailin vet fmt-check bench fuzz clean

all: build

# `bbsim version` names the commit: Go's VCS stamp when there is one, else this.
LDFLAGS   := -X main.buildCommit=$(shell git rev-parse HEAD 2>/dev/null)
build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/bbsim

# Puts bbsim in $(go env GOBIN), or $(go env GOPATH)/bin, so the README's `bbsim …` runs.
install:
	$(GO) install -ldflags '$(LDFLAGS)' ./cmd/bbsim

run: build
	$(BIN) run $(ARGS)

# Installs the outside peers the tests use when any is missing (needs apt-get).
test-deps:
	@missing=""; for p in $(TEST_DEBS); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing test peers (missing:$$missing)"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(TEST_DEBS) >/dev/null; \
	fi

# wrk drives BenchmarkRIMEndToEndWrk as an outside push initiator; Mailpit is the peer
# BenchmarkMailInVsMailpit measures mail-in against (a Go module, built into bin/).
bench-deps: test-deps bin/mailpit
	@command -v wrk >/dev/null 2>&1 || { echo "installing wrk"; $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends wrk >/dev/null; }

# The mail-in comparison alone: BBSIM_BENCH_ROUNDS rounds (default 3) of each server.
bench-mailin: bench-deps
	$(GO) test -run '^$$' -bench MailInVsMailpit -benchtime 1x -v ./bench

MAILPIT_VERSION := v1.33.1
bin/mailpit:
	GOBIN=$(CURDIR)/bin $(GO) install github.com/axllent/mailpit@$(MAILPIT_VERSION)

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

# Each target runs for FUZZTIME. Go 1.26's fuzz coordinator can report "context deadline
# exceeded" when -fuzztime ends while a worker is between inputs (golang/go#75804, fixed in
# Go 1.27): a run that fails with only that message and wrote no new input under
# testdata/fuzz found nothing, and counts as green. Any written input fails the run.
fuzz:
	@for pkg in $$($(GO) list ./...); do \
		dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
		for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
			echo "== $$pkg $$f"; \
			before=$$(ls $$dir/testdata/fuzz/$$f 2>/dev/null | wc -l); \
			out=$$($(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg 2>&1); rc=$$?; \
			echo "$$out" | tail -n 4; \
			after=$$(ls $$dir/testdata/fuzz/$$f 2>/dev/null | wc -l); \
			if [ $$rc -ne 0 ]; then \
				if [ $$after -eq $$before ] && echo "$$out" | grep -q '^    context deadline exceeded$$' && \
					[ $$(echo "$$out" | grep -c -e '^--- FAIL' -e 'Failing input' -e 'panic:') -eq 1 ]; then \
					echo "   (the coordinator's end-of-run race, golang/go#75804: no input written, counted as green)"; \
				else echo "$$out"; exit 1; fi; \
			fi; \
		done; \
	done

clean:
	rm -rf bin
