# slimroot: `make demo` runs the main job on a built-in default, `make test` runs the tests.
# Both install what they lack (Debian packages, npm packages, the build) first.

APT_PACKAGES := mmdebstrap umoci skopeo docker-registry qemu-system-x86 qemu-system-arm \
	cpio pigz zstd xz-utils lz4 time gcc libc6-dev gcc-aarch64-linux-gnu apache2-utils \
	erofs-utils squashfs-tools e2fsprogs busybox-static curl \
	build-essential flex bison bc libelf-dev libssl-dev linux-source-6.1
# One command per package above that tells whether it is installed.
APT_PROBES := mmdebstrap umoci skopeo docker-registry qemu-system-x86_64 qemu-system-aarch64 \
	cpio pigz zstd xz lz4 /usr/bin/time gcc aarch64-linux-gnu-gcc htpasswd mkfs.erofs mksquashfs mke2fs curl \
	make flex bison bc /usr/include/libelf.h /usr/include/openssl/ssl.h /usr/src/linux-source-6.1.tar.xz

.PHONY: all deps build init test demo lint typecheck clean bench

all: build

deps: .stamp-apt node_modules/.package-lock.json

.stamp-apt:
	@missing=""; for c in $(APT_PROBES); do command -v $$c >/dev/null 2>&1 || missing="$$missing $$c"; done; \
	[ -e /bin/busybox ] || missing="$$missing busybox"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages (missing:$$missing)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES); \
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

lint: deps
	npx biome check src test scripts

test: build typecheck lint
	npm test

demo: build
	node --import tsx scripts/demo.ts

bench: build
	node --import tsx scripts/bench.ts

clean:
	rm -rf dist .stamp-apt
	$(MAKE) -C init clean
