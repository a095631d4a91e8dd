# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures shared by the integration tests: a real PostgreSQL 15 cluster, the real pg_probackup."""

import os
import shutil
import tempfile

import pytest

import alation_shell
from backup_host import BackupHost
from pgcluster import PgCluster


def find_pg_probackup():
    """The real pg_probackup: $PG_PROBACKUP, else PATH (plain or versioned name)."""
    explicit = os.environ.get('PG_PROBACKUP')
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    for name in ('pg_probackup', 'pg_probackup-15'):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope='session')
def pg_probackup_bin():
    found = find_pg_probackup()
    if not found:
        pytest.skip('pg_probackup not found ($PG_PROBACKUP unset and none on PATH): '
                    'tests against the real binary skipped')
    return found


@pytest.fixture
def scratch():
    """A temp dir that the cluster's OS user can traverse."""
    d = tempfile.mkdtemp(prefix='alation-backup-test-')
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def pg_cluster(scratch):
    """A running PostgreSQL 15 cluster with pgbench tables, stopped afterwards."""
    cluster = PgCluster(os.path.join(scratch, 'pg')).start()
    cluster.pgbench_init(scale=1)
    yield cluster
    cluster.stop('immediate')


@pytest.fixture(scope='module')
def sshd():
    """A loopback backup host (sshd and a throwaway user) for the off-host copy, stopped afterwards."""
    workdir = tempfile.mkdtemp(prefix='alation-backup-sshd-')
    server = BackupHost(workdir)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def alation_host(scratch):
    """A real Alation shell (a debootstrapped Debian 12 chroot, its users only inside it) with PostgreSQL 15
    running inside it as alation, fresh for each test (an overlay of the cached base); taken down afterwards."""
    root = os.path.join(scratch, 'alation')
    try:
        host = alation_shell.ShellHost(root, alation_shell.up(root, scale=1))
        yield host
    finally:
        alation_shell.down(root, purge=True)
