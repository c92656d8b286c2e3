# One command runs every test: make test.
GO ?= go
STATICCHECK ?= v0.8.2

.PHONY: test vet fuzz-smoke bench load

test: vet
	$(GO) test -count=1 ./...
	@# The packages with goroutines, under the race detector.
	$(GO) test -count=1 -race ./host ./overudp ./examples/...
	@if [ -f interop/go.mod ]; then cd interop && $(GO) test -count=1 $$($(GO) list ./... | grep -v '/load$$\|/nettest$$'); fi
	@# Every net.Conn the project returns against x/net/nettest, under the race detector.
	@if [ -f interop/go.mod ]; then cd interop && $(GO) test -count=1 -race ./nettest; fi
	@# wireguard-go's netstack drop-in: real WireGuard devices, against gVisor's.
	@if [ -f wireguard/go.mod ]; then cd wireguard && $(GO) test -count=1 ./... && $(GO) test -count=1 -race -run 'TestPathMTU|TestLookupAndPing' ./...; fi
	@# The short load suite alone, so no other test shares its two cores.
	@if [ -f interop/go.mod ]; then cd interop && $(GO) test -count=1 ./load; fi

vet:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags icount . ./tcpstack
	@# staticcheck, pinned, installed from the module proxy if missing.
	@command -v staticcheck >/dev/null || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK)
	PATH="$$PATH:$$($(GO) env GOPATH)/bin" staticcheck ./...
	@if [ -f interop/go.mod ]; then cd interop && PATH="$$PATH:$$($(GO) env GOPATH)/bin" staticcheck ./...; fi
	@# 32-bit builds of everything outside interop/, tests included.
	GOARCH=386 $(GO) vet ./...
	GOARCH=arm $(GO) vet ./...
	@if [ -f interop/go.mod ]; then cd interop && $(GO) vet ./... && $(GO) vet -tags icount ./bench; fi
	@if [ -f wireguard/go.mod ]; then cd wireguard && $(GO) vet ./... && PATH="$$PATH:$$($(GO) env GOPATH)/bin" staticcheck ./...; fi

# Runs every fuzz target (of this module, wireguard/ and interop/) for FUZZTIME
# (default 20,000 executions). A count,
# not a duration: a duration can end in a spurious "context deadline
# exceeded" failure from Go's fuzzing coordinator on a loaded machine
# (golang/go#75804).
FUZZTIME ?= 20000x
# How long the fuzzer may spend shrinking each new interesting input: a
# smoke run wants coverage, and minimising a long Stack schedule runs it
# thousands of times.
FUZZMINIMIZE ?= 100x
fuzz-smoke:
	@for mod in . wireguard interop; do \
		[ -f $$mod/go.mod ] || continue; \
		for pkg in $$(cd $$mod && $(GO) list ./...); do \
			dir=$$(cd $$mod && $(GO) list -f '{{.Dir}}' $$pkg); \
			for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/func //'); do \
				echo "fuzz $$pkg $$f for $(FUZZTIME)"; \
				(cd $$mod && $(GO) test -run='^$$' -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) -fuzzminimizetime=$(FUZZMINIMIZE) $$pkg) || exit 1; \
			done; \
		done; \
	done

# Writes bench.txt (this module) and bench-interop.txt (side by side with
# gVisor, soypat/seqs and the kernel); summarise each with benchstat.
bench:
	$(GO) test -run='^$$' -bench=. -benchmem -count=6 . ./tcpstack | tee bench.txt
	cd interop && $(GO) test -run='^$$' -bench=. -benchmem -count=6 ./bench | tee ../bench-interop.txt

# The full load suite: net/http on tcpfsm, gVisor and the kernel side by
# side under ab, wrk, curl and a hping3 SYN flood (apt-get install
# apache2-utils wrk hping3 curl). `make test` runs its short version.
# LOAD_REPORT=/absolute/path also writes the table there.
load:
	cd interop && LOAD_FULL=1 $(GO) test -count=1 -v -run '^TestLoad$$' -timeout 30m ./load

# Runs Linux's packetdrill suite (read in place, never copied) under the
# linux profile and writes docs/packetdrill-linux.md. Scripts that FAIL
# do not fail the build; a PASS share of the in-scope (not UNSUPPORTED)
# scripts below PKTDRILL_MIN_PASS percent does.
PKTDRILL_LINUX ?= ../shared/packetdrill-linux/gtests/net/tcp
PKTDRILL_MIN_PASS ?= 90
.PHONY: pktdrill-linux
pktdrill-linux:
	@# Each script's verdict and reason go to the Markdown table; the summary line is printed.
	@out=$$($(GO) run ./cmd/pktdrill -profile linux -ignore-push -ignore-unexpected -q -min-pass $(PKTDRILL_MIN_PASS) -dir $(PKTDRILL_LINUX) -markdown docs/packetdrill-linux.md -splice CONFORMANCE.md 2>&1); rc=$$?; \
		echo "$$out" | grep -v "^exit status" | tail -n 2; exit $$rc
