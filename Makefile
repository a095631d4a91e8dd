# alation.backup — developer entry points. Run as root on Debian 12:
#   make demo    a real backup of a throwaway PostgreSQL cluster
#   make test    every test (sanity, units, lint, integration, molecule, e2e)
#   make bench   archive speed and memory against GNU tar and pigz
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
BUILD := $(CURDIR)/.build
# ansible looks collections up as <path>/ansible_collections/<ns>/<name>.
COLLECTIONS := $(BUILD)/collections
COLLECTION_LINK := $(COLLECTIONS)/ansible_collections/alation/backup
# ansible-test wants a real tree at .../ansible_collections/alation/backup
# that is its own git repo (it lists files through git).
SANITY_TREE := $(BUILD)/sanity/ansible_collections/alation/backup
# Debian packages the tests, the demo and the benchmark use.
APT_PACKAGES := postgresql-15 postgresql-contrib pigz isal util-linux git shellcheck time debootstrap
PIP_VERSION_FOR_ANSIBLE_TEST := 24.2
ANSIBLE_TEST_CACHE := $(HOME)/.ansible/test/cache

export PATH := $(BIN):/usr/lib/postgresql/15/bin:$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export ANSIBLE_COLLECTIONS_SCAN_SYS_PATH := false
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help deps venv collection shell sanity-tree sanity units lint integration molecule test demo demo-verify bench clean

help:
	@sed -n 's/^#   //p' $(MAKEFILE_LIST)

## Setup ---------------------------------------------------------------------
deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(BIN)/.installed: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

venv: $(BIN)/.installed

collection: venv
	mkdir -p $(dir $(COLLECTION_LINK))
	ln -sfn $(CURDIR) $(COLLECTION_LINK)

# The Alation shell the role-level tests, molecule and the demo run in: a
# Debian 12 chroot built with debootstrap once (about a minute), then cached.
shell: deps venv
	$(BIN)/python tests/support/alation_shell.py build

## Tests ---------------------------------------------------------------------
# ansible-test bootstraps pip in each sanity venv from a script it would
# download; an offline stand-in in its cache runs pip from a PyPI wheel.
$(ANSIBLE_TEST_CACHE)/get_pip_$(subst .,_,$(PIP_VERSION_FOR_ANSIBLE_TEST)).py: tests/sanity/get_pip_offline.py | venv
	mkdir -p $(ANSIBLE_TEST_CACHE)
	$(BIN)/pip download -q --disable-pip-version-check --no-deps -d $(ANSIBLE_TEST_CACHE) pip==$(PIP_VERSION_FOR_ANSIBLE_TEST)
	cp $< $@

sanity-tree: venv
	rm -rf $(SANITY_TREE) && mkdir -p $(SANITY_TREE)
	git ls-files -co --exclude-standard | tar -cf - -T - | tar -xf - -C $(SANITY_TREE)
	cd $(SANITY_TREE) && git init -q && git add -A

sanity: sanity-tree $(ANSIBLE_TEST_CACHE)/get_pip_$(subst .,_,$(PIP_VERSION_FOR_ANSIBLE_TEST)).py
	cd $(SANITY_TREE) && $(BIN)/ansible-test sanity --venv --requirements --python 3.11 --color no

units: collection
	$(BIN)/pytest -q tests/unit

lint: collection
	$(BIN)/ansible-lint --profile production --offline

# Module targets through ansible-test (the real Ansible path), then the
# pytest suites that start their own PostgreSQL cluster.
integration: deps collection shell sanity-tree
	cd $(SANITY_TREE) && $(BIN)/ansible-test integration --local --python 3.11 \
	  --allow-destructive --allow-root --color no $(TARGETS)
	$(BIN)/pytest -q tests/integration

# Molecule runs from extensions/. The incremental scenario needs the real
# pg_probackup; without it that scenario is skipped, and says so.
molecule: deps collection shell
	cd extensions && $(BIN)/molecule test -s default
	if command -v pg_probackup >/dev/null || [ -x "$${PG_PROBACKUP:-}" ]; then \
	  cd extensions && $(BIN)/molecule test -s incremental; \
	else echo "SKIPPED molecule scenario 'incremental': pg_probackup not found (\$$PG_PROBACKUP unset, none on PATH)"; fi

test: deps sanity units lint integration molecule

## Demo and benchmark --------------------------------------------------------
demo: deps collection shell
	demo/demo.sh

demo-verify: deps collection shell
	demo/verify.sh $(ARCHIVE)

bench: deps collection
	$(BIN)/python bench/archive_bench.py

clean:
	rm -rf $(BUILD) .pytest_cache tests/output
