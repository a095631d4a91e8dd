# alation.backup — developer entry points. Run as root on Debian 12:
#   make demo    a real backup of a throwaway PostgreSQL cluster
#   make demo-offsite  an encrypted backup copied to a loopback backup host, the drill from that copy, the metrics
#   make demo-cloud    an encrypted backup copied to a loopback S3 server, verified there, the drill from that copy
#   make docs    the README's role variable tables, from the roles' meta/argument_specs.yml
#   make changelog  CHANGELOG.rst: the coming release's notes, from changelogs/fragments/
#   make test    every test (sanity, units, lint, integration, a fault-suite sample, molecule, galaxy)
#   make bench   archive speed against GNU tar and pigz, a whole run against a bare script, a 20-host fleet
#                and a mixed one; task entries and the controller's CPU per host
#   make fleet   only the fleet runs (ansible-playbook -f 10 over 20 shells; then one with ten times the data)
#   make faults  the whole fault suite (kill -9, disk full, concurrency, secrets, bad inputs, clock, neighbour,
#                Alation's own backup, controller gone, far side); SEED=<n> to replay
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
APT_PACKAGES := postgresql-15 postgresql-contrib pigz isal util-linux git shellcheck time debootstrap gnupg openssh-server rsync faketime \
	rclone
# The pip versions ansible-test bootstraps: 24.2 (ansible-core 2.19), 23.1.2
# and 21.3.1 (2.16, for Python 3.7 and 3.6).
PIP_VERSIONS_FOR_ANSIBLE_TEST := 24.2 23.1.2 21.3.1
ANSIBLE_TEST_CACHE := $(HOME)/.ansible/test/cache
GET_PIPS := $(foreach v,$(PIP_VERSIONS_FOR_ANSIBLE_TEST),$(ANSIBLE_TEST_CACHE)/get_pip_$(subst .,_,$(v)).py)

# The managed hosts' Pythons: RHEL 8's platform-python is 3.6, RHEL 9 has
# 3.9, Debian 12 3.11. pyenv has each here. ansible-core 2.19's ansible-test
# checks 3.8 and newer, 2.16's (the oldest requires_ansible admits) 3.6 and 3.7.
PYENV_ROOT ?= $(shell pyenv root 2>/dev/null || echo $(HOME)/.pyenv)
pyenv_bin = $(lastword $(sort $(wildcard $(PYENV_ROOT)/versions/$(1).[0-9]*/bin)))
PYTHONS_2_19 := 3.8 3.9 3.10 3.11 3.12 3.13
PYTHONS_2_16 := 3.6 3.7
PYENV_PATH := $(subst $(eval) ,:,$(foreach v,$(PYTHONS_2_16) $(PYTHONS_2_19),$(call pyenv_bin,$(v))))
VENV_216 := $(CURDIR)/.venv-ansible-2.16
# The S3 server of the object-store copy's tests and demo (moto's server mode), in a venv of its own.
VENV_S3 := $(CURDIR)/.venv-s3

export PATH := $(BIN):/usr/lib/postgresql/15/bin:$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export ANSIBLE_COLLECTIONS_SCAN_SYS_PATH := false
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help docs changelog deps venv venvs s3-server promtool collection shell sanity-tree sanity pythons units lint integration faults faults-sample molecule galaxy test demo demo-verify demo-offsite demo-cloud bench fleet clean

help:
	@sed -n 's/^#   //p' $(MAKEFILE_LIST)

## Docs ----------------------------------------------------------------------
# The README's variable tables come from the roles' argument specs, one source
# (tests/unit/docs/test_variable_tables.py fails when they differ).
docs: venv
	$(BIN)/python tools/role_tables.py

# CHANGELOG.rst until the first release: the coming release's notes from changelogs/fragments/
# (antsibull-changelog release in a throwaway copy; the version marked not released yet).
changelog: venv
	$(BIN)/python tools/changelog_preview.py

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

# ansible-core 2.16, and a venv for each end of the hosts' Pythons (unit tests).
$(VENV_216)/.installed: tests/requirements/ansible-2.16.txt
	$(PYTHON) -m venv $(VENV_216)
	$(VENV_216)/bin/pip install -q --disable-pip-version-check -r $<
	touch $@

$(CURDIR)/.venv-py%/.installed: tests/requirements/python%.txt
	@test -x "$(call pyenv_bin,$*)/python$*" || { echo "Python $* not found under $(PYENV_ROOT)/versions (pyenv)"; exit 1; }
	$(call pyenv_bin,$*)/python$* -m venv $(@D)
	$(if $(filter 3.6,$*),$(@D)/bin/python -m pip install -q --disable-pip-version-check 'pip==21.3.1')
	$(@D)/bin/pip install -q --disable-pip-version-check --prefer-binary -r $<
	touch $@

$(VENV_S3)/.installed: tests/requirements/s3-server.txt
	$(PYTHON) -m venv $(VENV_S3)
	$(VENV_S3)/bin/pip install -q --disable-pip-version-check -r $<
	touch $@

s3-server: $(VENV_S3)/.installed

# promtool checks the README's Prometheus rules (tests/unit/docs/test_monitoring_rules.py). Debian ships it
# only inside the prometheus package, whose install starts a server: take the one program out of the .deb.
$(BIN)/promtool: | venv
	rm -rf $(BUILD)/promtool && mkdir -p $(BUILD)/promtool
	cd $(BUILD)/promtool && { apt-get download -qq -o APT::Sandbox::User=root prometheus || { apt-get update -qq && apt-get download -qq -o APT::Sandbox::User=root prometheus; }; }
	dpkg-deb --fsys-tarfile $(BUILD)/promtool/prometheus_*.deb | tar -x -C $(BUILD)/promtool ./usr/bin/promtool
	install -m 0755 $(BUILD)/promtool/usr/bin/promtool $@
	rm -rf $(BUILD)/promtool

promtool: $(BIN)/promtool

venvs: venv $(VENV_216)/.installed $(CURDIR)/.venv-py3.6/.installed $(CURDIR)/.venv-py3.13/.installed

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
$(ANSIBLE_TEST_CACHE)/get_pip_%.py: tests/sanity/get_pip_offline.py | venv
	mkdir -p $(ANSIBLE_TEST_CACHE)
	$(BIN)/pip download -q --disable-pip-version-check --no-deps -d $(ANSIBLE_TEST_CACHE) pip==$(subst _,.,$*)
	cp $< $@

sanity-tree: venv
	rm -rf $(SANITY_TREE) && mkdir -p $(SANITY_TREE)
	git ls-files -co --exclude-standard | tar -cf - -T - | tar -xf - -C $(SANITY_TREE)
	cd $(SANITY_TREE) && git init -q && git add -A

sanity: sanity-tree $(GET_PIPS)
	cd $(SANITY_TREE) && $(BIN)/ansible-test sanity --venv --requirements --python 3.11 --color no

# Every module and module_util compiles and imports on each host Python;
# the module_utils unit tests pass on the oldest (3.6) and the newest (3.13).
pythons: collection sanity-tree venvs $(GET_PIPS)
	cd $(SANITY_TREE) && for v in $(PYTHONS_2_19); do \
	  PATH=$(PYENV_PATH):$$PATH $(BIN)/ansible-test sanity --test compile --test import --python $$v \
	    --venv --requirements --color no || exit 1; done
	cd $(SANITY_TREE) && for v in $(PYTHONS_2_16); do \
	  PATH=$(VENV_216)/bin:$(PYENV_PATH):$$PATH $(VENV_216)/bin/ansible-test sanity --test compile --test import \
	    --python $$v --venv --requirements --color no || exit 1; done
	for v in 3.6 3.13; do echo "== module_utils unit tests on Python $$v"; \
	  $(CURDIR)/.venv-py$$v/bin/python -m pytest -q tests/unit/plugins/module_utils || exit 1; done

units: collection promtool
	$(BIN)/pytest -q tests/unit

lint: collection
	$(BIN)/ansible-lint --profile production --offline

# Module targets through ansible-test (the real Ansible path), then the
# pytest suites that start their own PostgreSQL cluster: a file a worker,
# INTEGRATION_JOBS at once (they wait on PostgreSQL, minute names and ssh
# more than on the CPU), then the few that change the host for everyone.
INTEGRATION_JOBS ?= 3
integration: deps collection shell venvs s3-server sanity-tree
	cd $(SANITY_TREE) && $(BIN)/ansible-test integration --local --python 3.11 \
	  --allow-destructive --allow-root --color no $(TARGETS)
	$(BIN)/pytest -q -n $(INTEGRATION_JOBS) --dist loadfile -m 'not serial' tests/integration
	$(BIN)/pytest -q -m serial tests/integration

# Molecule runs from extensions/. The incremental scenario needs the real
# pg_probackup; without it that scenario is skipped, and says so.
molecule: deps collection shell
	cd extensions && $(BIN)/molecule test -s default
	if command -v pg_probackup >/dev/null || [ -x "$${PG_PROBACKUP:-}" ]; then \
	  cd extensions && $(BIN)/molecule test -s incremental; \
	else echo "SKIPPED molecule scenario 'incremental': pg_probackup not found (\$$PG_PROBACKUP unset, none on PATH)"; fi

# What Galaxy and AWX do with this repository, offline: build the collection
# from the tracked tree and import it as Galaxy does (galaxy-importer: docs,
# ansible-lint; its ansible-test step wants a container, so it stays off and
# make sanity stands in); then, as an AWX project sync does from the
# project's root, install collections/requirements.yml into a fresh path and
# resolve every playbook's roles there; check that an EE holding the
# artifact introspects cleanly, write the EE's build context, and lint the
# changelog.
GALAXY := $(BUILD)/galaxy
GALAXY_PROJECT := $(GALAXY)/project
EE_COLLECTION := $(BUILD)/ee-collection
galaxy: venv
	rm -rf $(GALAXY) && mkdir -p $(GALAXY_PROJECT) $(GALAXY)/tmp
	git ls-files -co --exclude-standard | tar -cf - -T - | tar -xf - -C $(GALAXY_PROJECT)
	cd $(GALAXY_PROJECT) && $(BIN)/ansible-galaxy collection build --output-path $(GALAXY)
	cd $(GALAXY) && GALAXY_IMPORTER_RUN_ANSIBLE_TEST=false GALAXY_IMPORTER_RUN_ANSIBLE_LINT=true \
	  GALAXY_IMPORTER_OFFLINE_ANSIBLE_LINT=true GALAXY_IMPORTER_CHECK_CHANGELOG=true \
	  GALAXY_IMPORTER_TMP_ROOT_DIR=$(GALAXY)/tmp \
	  $(BIN)/python -m galaxy_importer.main $(GALAXY)/alation-backup-*.tar.gz 2>&1 | tee importer.log
	@# A warning is something Galaxy would show its users; only the notice that
	@# tests/sanity has ignore files (every line of them justified) is expected.
	@! grep -E '^(WARNING|ERROR)' $(GALAXY)/importer.log | grep -v 'Ignore files skip ansible-test sanity tests'
	cd $(GALAXY_PROJECT) && env -u ANSIBLE_COLLECTIONS_PATH ANSIBLE_COLLECTIONS_PATH=$(GALAXY)/requirements_collections \
	  $(BIN)/ansible-galaxy collection install -r collections/requirements.yml -p $(GALAXY)/requirements_collections
	cd $(GALAXY_PROJECT) && for p in playbooks/*.yml; do \
	  ANSIBLE_COLLECTIONS_PATH=$(GALAXY)/requirements_collections $(BIN)/ansible-playbook -i localhost, \
	    -e alation_backup_hosts=all -e alation_restore_hosts=all --list-tasks $$p >/dev/null || exit 1; \
	  echo "AWX project: $$p resolves its roles from collections/requirements.yml"; done
	$(BIN)/ansible-builder introspect --sanitize $(GALAXY)/requirements_collections
	@# The EE holds the collection built from this checkout, not Galaxy's: the
	@# artifact goes where meta/execution-environment.yml takes it from, and the
	@# context ansible-builder writes must hold that very file (the image build
	@# itself needs podman or docker: ansible-builder build -c $(BUILD)/ee).
	rm -rf $(EE_COLLECTION) $(BUILD)/ee && mkdir -p $(EE_COLLECTION)
	cp $(GALAXY)/alation-backup-$$($(BIN)/python -c 'import yaml; print(yaml.safe_load(open("galaxy.yml"))["version"])').tar.gz \
	  $(EE_COLLECTION)/alation-backup.tar.gz
	$(BIN)/ansible-builder create -f meta/execution-environment.yml -c $(BUILD)/ee --output-filename Containerfile
	cmp $(EE_COLLECTION)/alation-backup.tar.gz $(BUILD)/ee/_build/collections/alation-backup.tar.gz \
	  || { echo "the EE build context lacks this checkout's collection (meta/execution-environment.yml additional_build_files)"; exit 1; }
	grep -q '/build/collections/alation-backup.tar.gz' $(BUILD)/ee/_build/requirements.yml \
	  || { echo "the EE's galaxy requirements do not install the artifact in its context"; exit 1; }
	cd $(GALAXY_PROJECT) && $(BIN)/antsibull-changelog lint && $(BIN)/antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml
	$(BIN)/python tools/changelog_preview.py --check

# The fault suite (issue 11) in the real Alation shell: kill -9 of whole runs,
# disk full, concurrent runs, the password's trail, bad inputs; and the world
# around the run (issue 18): the clock (faketime), a neighbour machine, Alation's
# own backup, the controller gone, the far side. faults-sample is a seeded subset
# of every kind (make test); faults all of it. SEED=<n> replays a run (the seed
# is printed first); KINDS=kill,secrets runs only those; ONLY=<case> only the
# cases whose name holds it.
FAULTS_ARGS = $(if $(SEED),--seed $(SEED)) $(if $(KINDS),--kinds $(KINDS)) $(if $(ONLY),--only $(ONLY))
faults: deps collection shell
	$(BIN)/python tests/faults/suite.py $(FAULTS_ARGS)

faults-sample: deps collection shell
	$(BIN)/python tests/faults/suite.py --sample $(FAULTS_ARGS)

test: deps sanity pythons units lint integration faults-sample molecule galaxy

## Demo and benchmark --------------------------------------------------------
demo: deps collection shell
	demo/demo.sh

demo-verify: deps collection shell
	demo/verify.sh $(ARCHIVE)

demo-offsite: deps collection shell
	demo/offsite.sh

demo-cloud: deps collection shell s3-server
	demo/cloud.sh

# The archive step against GNU tar and pigz; one whole backup through the role
# against the same steps as a bare script; then the 20-host fleet.
bench: deps collection shell
	$(BIN)/python bench/archive_bench.py
	$(BIN)/python bench/run_bench.py
	$(BIN)/python bench/fleet_bench.py

# 20 shells, each with its own PostgreSQL, backed up by one ansible-playbook -f 10; then the same 20 with one
# holding ten times the others' data (bench/fleet_bench.py --no-mixed / --mixed-only for one of the two).
fleet: deps collection shell
	$(BIN)/python bench/fleet_bench.py

clean:
	rm -rf $(BUILD) .pytest_cache tests/output
