# Stella Release Orchestrator - the two commands are `make run` and `make test`.
BIN := .venv/bin

.PHONY: run test bench demo lint fmt bootstrap clean

bootstrap:
	@scripts/bootstrap.sh

## run: serve API + UI on $${STELLA_LISTEN:-127.0.0.1:8080} with embedded SQLite under $${STELLA_HOME:-.stella}
run: bootstrap
	$(BIN)/stella server

## test: start Docker, registry, sshd and PostgreSQL when absent, lint, type-check, run all tests
test: bootstrap
	scripts/test.sh

## bench: run the benchmarks in bench/ and write docs/benchmarks.md
bench: bootstrap
	scripts/bench.sh

## demo: agents on a loopback Docker engine deploy a release dev → stage → prod, drift, rollback
demo: bootstrap
	scripts/demo.sh

lint: bootstrap
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/mypy src

fmt: bootstrap
	$(BIN)/ruff format src tests bench scripts
	$(BIN)/ruff check --fix src tests bench scripts

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache
