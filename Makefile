# The original's make targets, for this Python project.
PY ?= .venv/bin/python

.PHONY: setup rhai docker-up docker-db-up docker-down run-debug unit-tests integration-tests test bench lint

setup:
	python3 -m venv .venv && .venv/bin/pip install -e '.[test]'

docker-up:
	docker compose --profile app up -d --build

docker-db-up:
	docker compose up -d mongo kafka pubsub

docker-down:
	docker compose --profile app down

run-debug:
	MSTREAM_LOG=debug .venv/bin/mstream --config $${MSTREAM_CONFIG:-mstream-config.toml}

unit-tests:
	$(PY) -m pytest -q -m "not kafka and not mongodb and not pubsub"

integration-tests:
	$(PY) -m pytest -q -m "kafka or mongodb or pubsub"

test:
	bash .ci/run

bench:
	$(PY) bench/bench_engine.py

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy mstream operators

rhai:
	bash rust/install-rhai.sh $(PY)
