# The two commands of the README: `make serve` and `make test`. Both bootstrap first.
BUILD ?= build
JOBS ?= $(shell nproc)
PORT ?= 8000
CONFIG ?= configs/serve-default.toml

.PHONY: bootstrap build test serve clean

bootstrap:
	@tools/bootstrap

build: bootstrap
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

test: build
	@tools/test-setup
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 600

serve: build
	$(BUILD)/troupe serve --config $(CONFIG) --port $(PORT)

clean:
	rm -rf $(BUILD)
