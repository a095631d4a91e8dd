# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup role end to end: playbooks/backup.yml against a fake Alation host
(a plain tree) with a real PostgreSQL 15 cluster, then a real restore."""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import tarfile
import time

import pytest

import fake_alation
from pgcluster import PgCluster
from playbook import HOST, run_playbook, start_playbook
from restoring import restore_and_count

ARCHIVE_RE = re.compile(r'^\d{12}_5-17-0-116556_alation_backup\.tar\.gz$')


@pytest.fixture
def fake_host(scratch):
    root = os.path.join(scratch, 'alation')
    role_vars = fake_alation.up(root, scale=1)
    yield root, role_vars
    fake_alation.down(root)


def archives(root):
    return sorted(p for p in glob.glob(os.path.join(root, 'data2/backup/*')) if ARCHIVE_RE.match(os.path.basename(p)))


def source_cluster(root):
    return PgCluster.load(os.path.join(root, fake_alation.PG_BASE))


def role_run(role_vars, **extra):
    return run_playbook('backup.yml', dict(role_vars, **extra))


def assert_staging_clean(root):
    staging = os.path.join(root, 'data2/tmp')
    assert os.path.isdir(staging), 'the staging dir must be kept'
    assert os.listdir(staging) == [], 'the staging dir must be empty'
    assert oct(os.stat(staging).st_mode & 0o777) == '0o700'


@pytest.mark.parametrize('engine', ['pg_basebackup', 'pg_probackup'])
def test_backup_then_restore_gives_the_same_rows(engine, fake_host, scratch, request):
    root, role_vars = fake_host
    pg_probackup = request.getfixturevalue('pg_probackup_bin') if engine == 'pg_probackup' else None
    # Extra site files travel in the archive.
    site = os.path.join(root, 'etc/alation-site.conf')
    os.makedirs(os.path.dirname(site))
    with open(site, 'w') as f:
        f.write('site = demo\n')

    run = role_run(role_vars, alation_backup_engine=engine, alation_backup_extra_paths=['/etc/alation-site.conf'])
    assert run.rc == 0, run.output
    record = run.records[HOST]
    assert record['result'] == 'ok' and record['engine'] == engine and record['mode'] == 'FULL'

    [archive] = archives(root)
    assert record['archive'] == archive
    assert oct(os.stat(archive).st_mode & 0o777) == '0o600'
    subprocess.run(['sha256sum', '-c', os.path.basename(archive) + '.sha256'], cwd=os.path.dirname(archive), check=True)
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile('alation_backup_manifest.json'))
    assert names[0] == 'alation_backup_manifest.json'
    # Counted right after the backup, for the restore drill: pgbench's four tables.
    assert manifest['databases'] == {'postgres': {'tables': 4}}
    assert 'tmp/extra_paths/etc/alation-site.conf' in names
    assert_staging_clean(root)
    assert not os.path.exists(os.path.join(root, 'data2/backup/pgbackup')), 'pg staging dir removed (incremental off)'

    expected = int(source_cluster(root).psql('select count(*) from pgbench_accounts'))
    assert restore_and_count(archive, os.path.join(scratch, 'restore'), engine,
                             source_cluster(root).os_user, pg_probackup) == expected


def test_database_step_failure_leaves_no_archive_and_empties_staging(fake_host):
    root, role_vars = fake_host
    source_cluster(root).stop()
    run = role_run(role_vars, alation_backup_engine='pg_basebackup')
    assert run.rc != 0
    assert 'pg_basebackup failed' in run.output, run.output
    record = run.records[HOST]
    assert record['result'] == 'failed' and 'pg_basebackup' in record['error']
    assert archives(root) == []
    assert not [p for p in os.listdir(os.path.join(root, 'data2/backup')) if p.endswith('.tar.gz')]
    assert_staging_clean(root)
    assert not os.path.exists(os.path.join(root, 'data2/backup/.alation_backup.lock')), 'lock released'


def test_second_concurrent_run_is_refused_and_first_unaffected(fake_host):
    root, role_vars = fake_host
    first = start_playbook('backup.yml', dict(role_vars, alation_backup_engine='pg_basebackup'))
    lock = os.path.join(root, 'data2/backup/.alation_backup.lock')
    deadline = time.time() + 120
    while not os.path.exists(lock) and time.time() < deadline and first.proc.poll() is None:
        time.sleep(0.05)
    assert os.path.exists(lock), 'the first run never took the host lock'
    second = role_run(role_vars, alation_backup_engine='pg_basebackup')
    first.wait()
    assert second.rc != 0
    assert 'holds the host lock' in second.output, second.output
    assert first.rc == 0, first.output
    assert len(archives(root)) == 1


def test_check_mode_changes_nothing(fake_host):
    root, role_vars = fake_host
    marker = os.path.join(root, 'data2/tmp/left-by-someone')
    with open(marker, 'w') as f:
        f.write('x')
    before = sorted(os.listdir(os.path.join(root, 'data2/backup')))
    run = run_playbook('backup.yml', dict(role_vars, alation_backup_engine='pg_basebackup'), check=True)
    assert run.rc == 0, run.output
    assert os.path.exists(marker)
    assert sorted(os.listdir(os.path.join(root, 'data2/backup'))) == before


def test_freshness_guard_skips_a_recent_backup(fake_host):
    root, role_vars = fake_host
    assert role_run(role_vars, alation_backup_engine='pg_basebackup').rc == 0
    run = role_run(role_vars, alation_backup_engine='pg_basebackup', alation_backup_min_interval=1)
    assert run.rc == 0, run.output
    record = run.records[HOST]
    assert record['result'] == 'skipped' and 'younger than' in record['skipped_reason']
    assert 'changed=0' in run.output
    assert len(archives(root)) == 1
