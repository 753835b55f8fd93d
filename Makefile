# slimroot: `make demo` runs the main job on a built-in default, `make test` runs the tests.
# Both install what they lack (Debian packages, npm packages, the build) first.

# Every package the demo and the tests need on a fresh Debian 12, checked with dpkg-query (a
# command can exist without its package's files: aarch64-linux-gnu-gcc without the aarch64
# crti.o of libc6-dev-arm64-cross). kmod: `modinfo`, the tests' independent .modinfo reader.
# linux-headers-cloud-amd64 pulls the headers of Debian's current cloud kernel (today
# linux-headers-6.1.0-57-cloud-amd64), the kernel `slimroot kernel fetch` gets: init-boot's
# hanging-module test builds against them.
APT_PACKAGES := mmdebstrap umoci skopeo docker-registry qemu-system-x86 qemu-system-arm \
	cpio pigz zstd xz-utils lz4 time gcc libc6-dev gcc-aarch64-linux-gnu libc6-dev-arm64-cross \
	binutils apache2-utils erofs-utils squashfs-tools e2fsprogs fakeroot attr busybox-static curl kmod \
	util-linux chromium linux-headers-cloud-amd64 \
	build-essential flex bison bc libelf-dev libssl-dev linux-source-6.1
# golang-go: src/tar/go-parity.test.ts builds a small Go archive/tar harness (docker's and
# containerd's tar reader) to check slimroot's tar reader against it.
APT_PACKAGES += golang-go

.PHONY: all deps build init test test-corpus-slow demo lint typecheck clean bench bench-build

all: build

deps: .stamp-apt node_modules/.package-lock.json

.stamp-apt: Makefile
	@missing=""; for p in $(APT_PACKAGES); do \
	  [ "$$(dpkg-query -W -f='$${Status}' $$p 2>/dev/null)" = "install ok installed" ] || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@touch $@

node_modules/.package-lock.json: package-lock.json
	npm ci --no-audit --no-fund

init:
	$(MAKE) -C init

build: deps init
	npm run --silent build

typecheck: deps
	npx tsc --noEmit -p tsconfig.json

# biome, then jscpd (.jscpd.json: fails above 1% duplicated lines), then the layering of src/
# (.dependency-cruiser.cjs: which folder imports which, no folder or module cycles).
lint: deps
	npx biome check src test scripts
	npx jscpd src test scripts init
	npx depcruise src

test: build typecheck lint
	npm test

# The corpus apps too slow for make test's budget under TCG (the JRE): test/corpus.test.ts.
test-corpus-slow: build
	SLIMROOT_CORPUS_SLOW=1 SLIMROOT_CORPUS=java node --import tsx --test test/corpus.test.ts
	SLIMROOT_CORPUS_SLOW=1 node --import tsx --test test/push-layers.test.ts

demo: build
	node --import tsx scripts/demo.ts

# The README's performance section: one `slimroot bench` run on Debian's nginx.
bench: build
	node --import tsx scripts/bench.ts

# The README's build-cost figure: `slimroot build` against `zcat layers | pigz -6`, paired runs.
bench-build: build
	node --import tsx scripts/bench-build.ts --tree fixture
	node --import tsx scripts/bench-build.ts --tree issue

clean:
	rm -rf dist .stamp-apt
	$(MAKE) -C init clean
