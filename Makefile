# kumonet: `make test` and `make demo` work on a fresh Debian 12 machine as root.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: all deps test lint unit demo bench clean

all: test

$(STAMP): pyproject.toml constraints.txt tools/install-system.sh
	bash tools/install-system.sh
	test -x $(PY) || /usr/bin/python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

deps: $(STAMP)

lint: deps
	$(VENV)/bin/ruff check kumonet tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: lint
	$(VENV)/bin/pytest $(PYTEST_ARGS)

unit: deps
	$(VENV)/bin/pytest -m "not lab and not etcd" $(PYTEST_ARGS)

demo: deps
	$(PY) -m kumonet.cli.demo

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# --- Keystone for the auth tests (tests/api/test_keystone.py) --------------
# A real Keystone in its own virtualenv (its pins apart from kumonet's), one
# step so it can be dropped or moved as a whole; Debian's keystone package
# would pull in ~230 packages and a uwsgi service.
KEYSTONE_VENV := .venv-keystone
$(KEYSTONE_VENV)/.installed: tools/keystone-constraints.txt | $(STAMP)
	test -x $(KEYSTONE_VENV)/bin/python || /usr/bin/python3 -m venv $(KEYSTONE_VENV)
	$(KEYSTONE_VENV)/bin/pip install -q -c tools/keystone-constraints.txt keystone
	touch $@
deps: $(KEYSTONE_VENV)/.installed
