# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The restore role end to end: playbooks/verify_backup.yml (the drill) and
playbooks/restore.yml inside a real Alation shell (its users only inside it,
PostgreSQL 15 running inside it), backed up once per engine by the backup
role, both roles with their defaults but the shell's path and port."""

import collections
import glob
import os
import re
import shutil
import stat
import tarfile
import tempfile
import time

import pytest

import alation_shell
from playbook import HOST, run_playbook, start_playbook
from restoring import (
    copy_archive,
    drop_tar_member,
    flip_byte,
    restore_vars,
    run_restore_playbook,
    table_counts,
    tamper_archive,
)

ARCHIVE_RE = re.compile(r'^\d{12}_5-17-0-116556_alation_backup\.tar\.gz$')
CHECKS = ['sha256', 'extract', 'rebuild', 'consistent', 'databases', 'amcheck', 'table_counts']
# pgbench -i makes four tables; the backup role records them right after the backup.
RECORDED = {'postgres': {'tables': 4}}

Backup = collections.namedtuple('Backup', 'engine root role_vars archive rows_at_backup host')


@pytest.fixture(scope='module', params=['pg_basebackup', 'pg_probackup'])
def backed_up(request):
    """A shell backed up once by the backup role with the given engine, its database changed afterwards."""
    engine = request.param
    tmp = tempfile.mkdtemp(prefix='alation-restore-test-')
    os.chmod(tmp, 0o755)
    root = os.path.join(tmp, 'alation')
    try:
        host = alation_shell.ShellHost(root, alation_shell.up(root, scale=1))
        if engine == 'pg_probackup' and not host.has_pg_probackup:
            pytest.skip('pg_probackup not found ($PG_PROBACKUP unset and none on PATH): restores of its archives '
                        'are not tested')
        # A site file with its own owner (the shell's alation) and mode travels in the staging dir.
        site = host.path('/etc/alation-site.conf')
        with open(site, 'w') as f:
            f.write('site = test\n')
        os.chown(site, 4501, 0)
        os.chmod(site, 0o640)
        run = run_playbook('backup.yml', dict(host.role_vars, alation_backup_engine=engine,
                                              alation_backup_extra_paths=['/etc/alation-site.conf']))
        assert run.rc == 0, run.output
        rows = int(host.psql('select count(*) from pgbench_accounts'))
        # Change the source afterwards: the drill must report what the archive holds.
        host.psql('create table added_after_backup (id int)')
        host.psql('insert into pgbench_accounts select aid + 1000000, bid, abalance, filler '
                  'from pgbench_accounts limit 10')
        host.psql('create database added_after_backup')
        yield Backup(engine, root, host.role_vars, run.records[HOST]['archive'], rows, host)
    finally:
        alation_shell.down(root, purge=True)
        shutil.rmtree(tmp, ignore_errors=True)


def drill(backup, check=False, **extra):
    return run_restore_playbook('verify_backup.yml', restore_vars(backup.role_vars, **extra), check=check)


def restore(backup, check=False, **extra):
    return run_restore_playbook('restore.yml', restore_vars(backup.role_vars, **extra), check=check)


def storage_state(root):
    """Every file of the backup storage dir with its size and mtime: what the drill must not change."""
    storage = os.path.join(root, 'data2/backup')
    return {n: (os.stat(os.path.join(storage, n)).st_size, os.stat(os.path.join(storage, n)).st_mtime_ns)
            for n in os.listdir(storage)}


def scratch(backup):
    return os.path.join(backup.root, 'data2/restore_drill')


def results(record):
    return {name: check['result'] for name, check in record['checks'].items()}


def with_engine(engine):
    """Run a test whose behaviour does not depend on the engine with one engine only."""
    return pytest.mark.parametrize('backed_up', [engine], indirect=True)


# -- the drill -----------------------------------------------------------------------

def test_drill_passes_and_reports_the_counts_recorded_at_backup_time(backed_up):
    before = storage_state(backed_up.root)
    run = drill(backed_up)
    assert run.rc == 0, run.output
    record = run.records[HOST]
    assert record['result'] == 'ok' and record['mode'] == 'drill', record
    assert results(record) == dict.fromkeys(CHECKS, 'ok'), record['checks']
    assert record['archive'] == backed_up.archive and ARCHIVE_RE.match(os.path.basename(record['archive']))
    assert record['engine'] == backed_up.engine and record['backup_mode'] == 'FULL'
    # The counts of the archive, not of the source as it is now (one more table, one more database).
    assert record['databases_recorded'] == RECORDED
    assert record['databases_found'] == RECORDED
    assert record['checks']['table_counts']['detail'] == 'postgres: 4'
    assert float(record['duration_s']) > 0
    assert 'DRILL OK' in run.output and 'amcheck=ok' in run.output
    # Nothing live touched: the scratch dir is gone, the archives are as they were, the source runs.
    assert not os.path.exists(scratch(backed_up))
    assert storage_state(backed_up.root) == before
    assert backed_up.host.is_running()
    assert table_counts(backed_up.host)['postgres'] == {'tables': 5}


@with_engine('pg_basebackup')
def test_drill_in_check_mode_says_what_it_would_do(backed_up):
    before = storage_state(backed_up.root)
    run = drill(backed_up, check=True)
    assert run.rc == 0, run.output
    record = run.records[HOST]
    assert record['check_mode'] and record['result'] == 'ok'
    assert record['checks']['sha256']['result'] == 'ok'
    would = ' | '.join(record['would'])
    assert 'unpack tmp and pgbackup' in would and 'restore pg_basebackup backup' in would, would
    assert not os.path.exists(scratch(backed_up))
    assert storage_state(backed_up.root) == before


@with_engine('pg_basebackup')
def test_drill_fails_at_the_sha256_check_for_one_flipped_byte(backed_up, scratch_dir):
    copy = copy_archive(backed_up.archive, scratch_dir)
    flip_byte(copy)
    run = drill(backed_up, alation_restore_archive=copy)
    assert run.rc != 0
    record = run.records[HOST]
    assert record['result'] == 'failed' and record['failed_check'] == 'sha256', record
    assert 'sha256 check failed' in record['checks']['sha256']['detail']
    assert 'restore drill failed on %s (sha256)' % HOST in run.output
    assert results(record)['extract'] == 'skipped'
    assert not os.path.exists(scratch(backed_up))


def _drop_probackup_file(kind):
    def edit(tree):
        database = glob.glob(os.path.join(tree, 'pgbackup/backups/alation/*/database'))[0]
        if kind == 'wal':
            victim = sorted(glob.glob(os.path.join(database, 'pg_wal/0*')))[0]
        else:
            victim = max(glob.glob(os.path.join(database, 'base/*/*')), key=os.path.getsize)
        os.unlink(victim)
    return edit


def _drop_basebackup_file(kind):
    def edit(tree):
        if kind == 'wal':
            drop_tar_member(os.path.join(tree, 'pgbackup/pg_wal.tar'), lambda n: re.match(r'^0[0-9A-F]{23}$', n))
        else:
            drop_tar_member(os.path.join(tree, 'pgbackup/base.tar'), lambda n: n.startswith('base/5/'))
    return edit


@pytest.mark.parametrize('kind', ['data', 'wal'])
def test_drill_fails_at_rebuild_when_the_backup_lacks_a_file(backed_up, scratch_dir, kind):
    """The archive is whole (sha256 and counts match): only the database layer can notice."""
    edit = _drop_probackup_file(kind) if backed_up.engine == 'pg_probackup' else _drop_basebackup_file(kind)
    copy = tamper_archive(backed_up.archive, scratch_dir, edit, recount=True)
    run = drill(backed_up, alation_restore_archive=copy)
    assert run.rc != 0
    record = run.records[HOST]
    assert record['failed_check'] == 'rebuild', record
    assert results(record)['sha256'] == 'ok' and results(record)['extract'] == 'ok'
    detail = record['checks']['rebuild']['detail']
    if backed_up.engine == 'pg_probackup':
        assert 'is not found' in detail and 'corrupt' in detail, detail
    else:
        assert 'pg_verifybackup' in detail, detail
    assert '(rebuild)' in run.output
    assert not os.path.exists(scratch(backed_up))


@with_engine('pg_probackup')
def test_drill_fails_at_extract_when_the_archive_lacks_what_its_manifest_lists(backed_up, scratch_dir):
    copy = tamper_archive(backed_up.archive, scratch_dir, _drop_probackup_file('data'), recount=False)
    run = drill(backed_up, alation_restore_archive=copy)
    assert run.rc != 0
    record = run.records[HOST]
    assert record['failed_check'] == 'extract', record
    assert 'pgbackup files: archive recorded' in record['checks']['extract']['detail']
    assert not os.path.exists(scratch(backed_up))


@with_engine('pg_basebackup')
def test_drill_refuses_a_scratch_dir_holding_something_else(backed_up):
    keep = os.path.join(scratch(backed_up), 'precious.txt')
    os.makedirs(os.path.dirname(keep))
    with open(keep, 'w') as f:
        f.write('not the drill\'s\n')
    try:
        run = drill(backed_up)
        assert run.rc != 0
        assert 'holds what a drill does not make (precious.txt)' in run.output, run.output
        assert os.path.exists(keep)
    finally:
        shutil.rmtree(scratch(backed_up))


# -- the restore ---------------------------------------------------------------------

@with_engine('pg_basebackup')
def test_restore_refuses_without_confirmation(backed_up):
    run = restore(backed_up, alation_restore_pgdata='/data1/restored/data', alation_restore_files_dest='/data2/files')
    assert run.rc != 0
    assert 'Refusing to restore: alation_restore_confirm is not "YES"' in run.output, run.output
    assert not os.path.exists(os.path.join(backed_up.root, 'data1/restored'))
    assert not os.path.exists(os.path.join(backed_up.root, 'data2/files'))


def test_restore_into_empty_dirs_then_postgresql_starts_with_the_recorded_counts(backed_up):
    pgdata = '/data1/restored_%s/data' % backed_up.engine
    files = '/data2/files_%s' % backed_up.engine
    run = restore(backed_up, alation_restore_confirm='YES', alation_restore_pgdata=pgdata,
                  alation_restore_files_dest=files)
    assert run.rc == 0, run.output
    record = run.records[HOST]
    assert record['result'] == 'ok' and record['mode'] == 'restore', record
    assert results(record) == dict.fromkeys(CHECKS + ['files'], 'ok'), record['checks']
    assert not os.path.exists(scratch(backed_up))

    # The staging files, with the owner and mode the archive recorded.
    with tarfile.open(backed_up.archive) as tar:
        recorded = {m.name: m for m in tar.getmembers() if m.name.startswith('tmp')}
    assert recorded['tmp/extra_paths/etc/alation-site.conf'].mode == 0o640
    for name, member in recorded.items():
        st = os.lstat(os.path.join(backed_up.root, files.lstrip('/'), name[len('tmp/'):]))
        assert (stat.S_IMODE(st.st_mode), backed_up.host.user_name(st.st_uid)) == (member.mode, member.uname), name

    # PostgreSQL starts on the restored data directory, inside the shell as alation, as after a restore.
    port = alation_shell.free_port()
    host = backed_up.host
    host.run([alation_shell.PG_BIN + '/pg_ctl', '-D', pgdata, '-l', '/tmp/restored.log', '-w', '-o',
              '-p %d -k /tmp' % port, 'start'])
    try:
        restored = alation_shell.ShellHost(host.root, dict(host.role_vars, alation_backup_pg_port=port))
        assert table_counts(restored) == RECORDED
        assert int(restored.psql('select count(*) from pgbench_accounts')) == backed_up.rows_at_backup
    finally:
        host.run([alation_shell.PG_BIN + '/pg_ctl', '-D', pgdata, '-m', 'immediate', 'stop'], check=False)


@with_engine('pg_basebackup')
def test_restore_refuses_a_non_empty_pgdata_and_force_moves_it_aside(backed_up):
    pgdata = os.path.join(backed_up.root, 'data1/occupied/data')
    os.makedirs(pgdata)
    with open(os.path.join(pgdata, 'old-file'), 'w') as f:
        f.write('old\n')
    args = dict(alation_restore_confirm='YES', alation_restore_pgdata='/data1/occupied/data',
                alation_restore_files_dest='/data2/files_force')
    refused = restore(backed_up, **args)
    assert refused.rc != 0
    assert refused.records[HOST]['failed_check'] == 'rebuild'
    assert 'is not empty' in refused.records[HOST]['error'] and 'set force' in refused.records[HOST]['error']
    assert os.listdir(pgdata) == ['old-file']

    preview = restore(backed_up, check=True, alation_restore_force=True, **args)
    assert preview.rc == 0, preview.output
    assert any(w.startswith('move %s aside to %s.before-restore-' % (pgdata, pgdata))
               for w in preview.records[HOST]['would']), preview.records[HOST]['would']
    assert os.listdir(pgdata) == ['old-file']

    forced = restore(backed_up, alation_restore_force=True, **args)
    assert forced.rc == 0, forced.output
    aside = forced.records[HOST]['pgdata_moved_aside']
    assert aside.startswith(pgdata + '.before-restore-')
    assert os.listdir(aside) == ['old-file']
    assert os.path.exists(os.path.join(pgdata, 'PG_VERSION'))


@pytest.fixture
def scratch_dir():
    """A temp dir for damaged copies of an archive."""
    d = tempfile.mkdtemp(prefix='alation-restore-copy-')
    yield d
    shutil.rmtree(d, ignore_errors=True)


@with_engine('pg_basebackup')
def test_a_second_drill_while_one_runs_is_refused_and_the_first_unaffected(backed_up):
    first = start_playbook('verify_backup.yml', dict(restore_vars(backed_up.role_vars)))
    lock = os.path.join(backed_up.root, 'data2/backup/.alation_restore.lock')
    deadline = time.time() + 120
    while not os.path.exists(lock) and time.time() < deadline and first.proc.poll() is None:
        time.sleep(0.05)
    assert os.path.exists(lock), 'the first drill never took the lock'
    second = drill(backed_up)
    first.wait()
    assert second.rc != 0
    assert 'holds the host lock' in second.output, second.output
    assert first.rc == 0, first.output
    assert not os.path.exists(lock) and not os.path.exists(scratch(backed_up))


@with_engine('pg_basebackup')
def test_restore_never_replaces_the_data_directory_of_a_running_server(backed_up):
    source = backed_up.host
    pgdata = source.path(alation_shell.PGDATA)
    before = sorted(os.listdir(pgdata))
    run = restore(backed_up, alation_restore_confirm='YES', alation_restore_force=True,
                  alation_restore_pgdata=alation_shell.PGDATA, alation_restore_files_dest='/data2/f_live')
    assert run.rc != 0
    record = run.records[HOST]
    assert record['failed_check'] == 'rebuild' and 'stop it before restoring over it' in record['error'], record
    assert source.is_running() and sorted(os.listdir(pgdata)) == before
    assert not glob.glob(pgdata + '.before-restore-*')
