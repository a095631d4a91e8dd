# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup role end to end, inside a real Alation shell, with the role's defaults.

The shell is a debootstrapped Debian 12 chroot whose users alation and
alationadmin exist only inside it, with PostgreSQL 15 running inside it as
alation (tests/support/alation_shell.py). The role gets only what a real host
would need: the shell's path and the database port (and no become: we are
root already). Archives are then restored by hand, and with the drill.
"""

import glob
import hashlib
import json
import os
import re
import subprocess
import tarfile
import time

import pytest

from playbook import HOST, run_playbook, start_playbook
from restoring import restore_and_count

ARCHIVE_RE = re.compile(r'^\d{12}_5-17-0-116556_alation_backup\.tar\.gz$')


def archives(host):
    return sorted(p for p in glob.glob(host.path('/data2/backup/*')) if ARCHIVE_RE.match(os.path.basename(p)))


def role_run(host, check=False, **extra):
    return run_playbook('backup.yml', dict(host.role_vars, **extra), check=check)


def engine_vars(host, engine):
    if engine == 'pg_probackup' and not host.has_pg_probackup:
        pytest.skip('pg_probackup not found ($PG_PROBACKUP unset and none on PATH): the pg_probackup engine '
                    'is not tested; the pg_basebackup engine runs instead')
    return {} if engine == 'pg_probackup' else {'alation_backup_engine': engine}


def owner_of(path):
    st = os.stat(path)
    return st.st_uid, st.st_gid


def shell_stat(host):
    """Owner, group and mode of every path in the shell: what a refused run must leave as it was."""
    found = {}
    for top, dirs, files in os.walk(host.root):
        for name in dirs + files:
            path = os.path.join(top, name)
            st = os.lstat(path)
            found[path] = (st.st_uid, st.st_gid, st.st_mode)
    return found


def assert_staging_clean(host):
    staging = host.path('/data2/tmp')
    assert os.path.isdir(staging), 'the staging dir must be kept'
    assert os.listdir(staging) == [], 'the staging dir must be empty'
    assert oct(os.stat(staging).st_mode & 0o777) == '0o700'
    assert owner_of(staging) == (4502, 4502), "the staging dir stays alationadmin's, as the shell knows it"


@pytest.mark.parametrize('engine', ['pg_basebackup', 'pg_probackup'])
def test_defaults_back_up_inside_the_shell_then_restore_and_drill(engine, alation_host, scratch):
    host = alation_host
    extra = engine_vars(host, engine)
    # Extra site files travel in the archive.
    with open(host.path('/etc/alation-site.conf'), 'w') as f:
        f.write('site = demo\n')

    run = role_run(host, alation_backup_extra_paths=['/etc/alation-site.conf'], **extra)
    assert run.rc == 0, run.output
    record = run.records[HOST]
    assert record['result'] == 'ok' and record['engine'] == engine and record['mode'] == 'FULL'
    assert record['durations_s']['database'] > 0 and record['durations_s']['archive'] > 0

    [archive] = archives(host)
    assert record['archive'] == archive
    assert oct(os.stat(archive).st_mode & 0o777) == '0o600'
    assert owner_of(archive) == (4502, 4502), "the archive is the shell's alationadmin's"
    subprocess.run(['sha256sum', '-c', os.path.basename(archive) + '.sha256'], cwd=os.path.dirname(archive), check=True)
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        manifest = json.load(tar.extractfile('alation_backup_manifest.json'))
    names = [m.name for m in members]
    assert names[0] == 'alation_backup_manifest.json'
    owners = dict((m.name, m.uname) for m in members)
    assert owners['pgbackup'] == 'alation' and owners['tmp'] == 'alationadmin', 'tar names are the shell\'s'
    # Counted right after the backup, for the restore drill: pgbench's four tables.
    assert manifest['databases'] == {'postgres': {'tables': 4}}
    assert 'tmp/extra_paths/etc/alation-site.conf' in names
    assert_staging_clean(host)
    assert not os.path.exists(host.path('/data2/backup/pgbackup')), 'pg staging dir removed (incremental off)'
    # Locks leave nothing behind: not the host lock, not the catalog's lock. The owner marker stays: it says
    # which machine uses this storage dir.
    left = sorted(n for n in os.listdir(host.path('/data2/backup')) if n.startswith('.'))
    assert left == ['.alation_backup_owner'], left
    assert sorted(os.listdir(host.path('/data2'))) == ['backup', 'tmp']

    expected = int(host.psql('select count(*) from pgbench_accounts'))
    pg_probackup = host.path('/usr/local/bin/pg_probackup') if engine == 'pg_probackup' else None
    assert restore_and_count(archive, os.path.join(scratch, 'restore'), engine, 'alation_pg_test', pg_probackup,
                             db_user='alation') == expected

    drill = run_playbook('verify_backup.yml', {'alation_restore_root': host.root})
    assert drill.rc == 0, drill.output
    checks = drill.records[HOST]['checks']
    assert all(c['result'] == 'ok' for c in checks.values()), checks
    assert sorted(os.listdir(host.path('/data2'))) == ['backup', 'tmp'], 'the drill leaves nothing in /data2'


def test_incremental_pair_full_then_delta(alation_host):
    host = alation_host
    engine_vars(host, 'pg_probackup')
    first = role_run(host, alation_backup_incremental=True)
    assert first.rc == 0, first.output
    host.psql('update pgbench_accounts set abalance = abalance + 1 where aid < 100')
    second = role_run(host, alation_backup_incremental=True)
    assert second.rc == 0, second.output
    assert [first.records[HOST]['mode'], second.records[HOST]['mode']] == ['FULL', 'DELTA']
    assert len(archives(host)) == 2
    assert owner_of(host.path('/data2/backup/pgbackup')) == (4501, 4501), 'the catalog is the shell\'s alation\'s'


def test_a_user_missing_from_the_shell_is_refused_and_nothing_is_chowned(alation_host):
    host = alation_host
    before = shell_stat(host)
    run = role_run(host, alation_backup_owner='alation_ops')
    assert run.rc != 0
    error = run.records[HOST]['error']
    assert "user 'alation_ops' is not a user in %s/etc/passwd (the Alation shell's users)" % host.root in error, error
    assert shell_stat(host) == before
    assert archives(host) == []


@pytest.fixture
def same_named_host_users():
    """alation and alationadmin on the host too, under other uids (as seen on real hosts)."""
    made = []
    for name, uid in (('alation', 4601), ('alationadmin', 4602)):
        subprocess.run(['useradd', '--no-create-home', '-u', str(uid), '-s', '/usr/sbin/nologin', name], check=True)
        made.append(name)
    try:
        yield
    finally:
        for name in made:
            subprocess.run(['userdel', name], check=False)


@pytest.mark.serial  # alation and alationadmin on the host would refuse every other test's run meanwhile
def test_host_users_with_the_same_names_but_other_uids_are_refused(alation_host, same_named_host_users):
    host = alation_host
    before = shell_stat(host)
    run = role_run(host)
    assert run.rc != 0
    error = run.records[HOST]['error']
    assert "user 'alationadmin' is uid 4502 in the Alation shell" in error and 'but uid 4602 on the host' in error
    assert shell_stat(host) == before, "no file's owner changed"
    assert archives(host) == []


def test_check_mode_in_the_same_minute_as_an_archive_writes_nothing(alation_host):
    host = alation_host
    assert role_run(host, alation_backup_engine='pg_basebackup').rc == 0
    with open(host.path('/data2/tmp/left-by-someone'), 'w') as f:
        f.write('x')
    before = sorted(os.listdir(host.path('/data2/backup')))
    run = role_run(host, check=True, alation_backup_engine='pg_basebackup')
    assert run.rc == 0, run.output
    assert run.records[HOST]['check_mode'] is True
    assert os.path.exists(host.path('/data2/tmp/left-by-someone'))
    assert sorted(os.listdir(host.path('/data2/backup'))) == before


def test_database_step_failure_leaves_no_archive_and_empties_staging(alation_host):
    host = alation_host
    # Up for preflight's connection check, down by the time the database step runs.
    host.stop_postgres()
    run = role_run(host, alation_backup_engine='pg_basebackup')
    assert run.rc != 0
    assert 'cannot connect to PostgreSQL' in run.records[HOST]['error'], run.output
    assert archives(host) == []
    assert not [p for p in os.listdir(host.path('/data2/backup')) if p.endswith('.tar.gz')]
    assert_staging_clean(host)
    assert not os.path.exists(host.path('/data2/backup/.alation_backup.lock')), 'lock released'


def test_second_concurrent_run_is_refused_and_first_unaffected(alation_host):
    host = alation_host
    first = start_playbook('backup.yml', dict(host.role_vars, alation_backup_engine='pg_basebackup'))
    lock = host.path('/data2/backup/.alation_backup.lock')
    deadline = time.time() + 120
    while not os.path.exists(lock) and time.time() < deadline and first.proc.poll() is None:
        time.sleep(0.05)
    assert os.path.exists(lock), 'the first run never took the host lock'
    second = role_run(host, alation_backup_engine='pg_basebackup')
    first.wait()
    assert second.rc != 0
    assert 'holds the host lock' in second.output, second.output
    assert first.rc == 0, first.output
    assert len(archives(host)) == 1


def dead_run_lease(path, silent_for, stale_after=600):
    """The lease a run killed ``silent_for`` seconds ago left: nobody renews it any more."""
    started = time.time() - silent_for - 60
    with open(path, 'w') as f:
        json.dump(dict(owner='admin via ansible-playbook (AWX job 41)', run_id='41-1700000000.0', pid=999999,
                       started=started, renewed=time.time() - silent_for, stale_after=stale_after,
                       boot_id=open('/proc/sys/kernel/random/boot_id').read().strip(), token='dead'), f)


def test_a_killed_runs_lock_frees_itself_and_the_next_run_names_it(alation_host):
    host = alation_host
    lock = host.path('/data2/backup/.alation_backup.lock')
    # Killed 2 minutes ago: still within its stale_after, so the host is busy as far as anyone can tell.
    dead_run_lease(lock, silent_for=120)
    run = role_run(host, alation_backup_engine='pg_basebackup')
    assert run.rc != 0
    error = run.records[HOST]['error']
    assert 'run 41-1700000000.0 of admin via ansible-playbook (AWX job 41)' in error, error
    assert 'frees itself once it has not been renewed for 600s' in error and 'by hand' not in error, error
    assert archives(host) == [] and os.path.exists(lock)
    # Killed 11 minutes ago: not renewed for longer than stale_after (10 min), so the run takes over.
    dead_run_lease(lock, silent_for=660)
    run = role_run(host, alation_backup_engine='pg_basebackup')
    assert run.rc == 0, run.output
    taken = run.records[HOST]['lock_taken_over']
    assert 'from run 41-1700000000.0 of admin via ansible-playbook (AWX job 41)' in taken, taken
    silent = re.search(r'not renewed for (\d+)s \(stale after 600s\): that run is gone$', taken)
    assert silent and 660 <= int(silent.group(1)) < 900, taken
    assert '[WARNING]: took over the host lock' in run.output
    assert len(archives(host)) == 1 and not os.path.exists(lock), 'the lease is released, nothing left'


def plant_archive(host, ts, data=b'an older archive'):
    name = '%s_5-17-0-116556_alation_backup.tar.gz' % ts
    path = host.path('/data2/backup/' + name)
    with open(path, 'wb') as f:
        f.write(data)
    with open(path + '.sha256', 'w') as f:
        f.write('%s  %s\n# size %d\n' % (hashlib.sha256(data).hexdigest(), name, len(data)))
    return path


def test_retention_removes_exactly_the_old_archives_and_check_mode_lists_them(alation_host):
    host = alation_host
    old = [plant_archive(host, '2026110%d0102' % day) for day in range(1, 6)]
    lone = host.path('/data2/backup/202610010102_5-17-0-116556_alation_backup.tar.gz.sha256')
    with open(lone, 'w') as f:
        f.write('%s  %s\n' % ('0' * 64, os.path.basename(lone)[:-7]))
    foreign = [host.path('/data2/backup/' + n) for n in ('notes.txt', '202609010102_5-17-0-116556_other.tar.gz',
                                                         '.202611300000_5-17-0-116556_alation_backup.tar.gz.h.1.tmp')]
    for path in foreign:
        with open(path, 'w') as f:
            f.write('not ours to remove')
    expected = sorted(old[:3] + [p + '.sha256' for p in old[:3]] + [lone])

    check = role_run(host, check=True, alation_backup_engine='pg_basebackup', alation_backup_keep_count=3)
    assert check.rc == 0, check.output
    assert sorted(check.records[HOST]['retention']['removed']) == expected
    assert all(os.path.exists(p) for p in expected), 'check mode removes nothing'
    freed = sum(os.path.getsize(p) for p in expected)

    run = role_run(host, alation_backup_engine='pg_basebackup', alation_backup_keep_count=3)
    assert run.rc == 0, run.output
    record = run.records[HOST]
    print('retention removed %s (%s bytes freed)' % (
        [os.path.basename(p) for p in record['retention']['removed']], record['retention']['freed_bytes']))
    assert sorted(record['retention']['removed']) == expected, 'check mode listed exactly what went'
    assert int(record['retention']['freed_bytes']) == freed
    assert not any(os.path.exists(p) for p in expected)
    assert all(os.path.exists(p) for p in foreign + old[3:] + [p + '.sha256' for p in old[3:]])
    assert len(archives(host)) == 3 and record['archive'] == archives(host)[-1]


def test_freshness_guard_skips_a_recent_backup(alation_host):
    host = alation_host
    assert role_run(host, alation_backup_engine='pg_basebackup').rc == 0
    run = role_run(host, alation_backup_engine='pg_basebackup', alation_backup_min_interval=1)
    assert run.rc == 0, run.output
    record = run.records[HOST]
    assert record['result'] == 'skipped' and 'younger than' in record['skipped_reason']
    assert 'changed=0' in run.output
    assert len(archives(host)) == 1


def storage_snapshot(host):
    """Every file of the backup storage dir with its bytes' hash: what a refused run must leave as it was."""
    found = {}
    for top, dirs, files in os.walk(host.path('/data2/backup')):
        for name in files:
            path = os.path.join(top, name)
            with open(path, 'rb') as f:
                found[path] = hashlib.sha256(f.read()).hexdigest()
    return found


@pytest.mark.parametrize('data_temp_dir', ['/data2/backup', '/data2', '/'])
def test_a_staging_dir_typed_over_the_backup_storage_dir_is_refused_and_no_archive_lost(alation_host, data_temp_dir):
    host = alation_host
    assert role_run(host, alation_backup_engine='pg_basebackup').rc == 0
    before = storage_snapshot(host)
    assert len(archives(host)) == 1
    # One typo by an admin, in alation_conf.
    host.run(['alation_conf', 'alation.backup.data_temp_dir', '-s', data_temp_dir], user='alationadmin')
    run = role_run(host, alation_backup_engine='pg_basebackup')
    assert run.rc != 0
    error = run.records[HOST]['error']
    assert 'staging dir %s' % data_temp_dir in error and 'backup storage dir /data2/backup' in error, error
    assert storage_snapshot(host) == before, 'the archives, their .sha256 and the lock dir are untouched'


def test_a_failure_before_the_database_step_keeps_the_incremental_chain(alation_host):
    host = alation_host
    engine_vars(host, 'pg_probackup')
    assert role_run(host, alation_backup_incremental=True).rc == 0
    # A failure of the stage step, after the host lock is taken: a file in the staging dir that cannot be removed
    # (a missing extra path, which failed there once, is now refused in preflight).
    stuck = host.path('/data2/tmp/stuck')
    with open(stuck, 'w') as f:
        f.write('immutable\n')
    subprocess.run(['chattr', '+i', stuck], check=True)
    try:
        failed = role_run(host, alation_backup_incremental=True)
    finally:
        subprocess.run(['chattr', '-i', stuck], check=True)
        os.unlink(stuck)
    assert failed.rc != 0 and failed.records[HOST]['error'].startswith('Stage'), failed.records[HOST]
    assert failed.records[HOST]['recovered'] == {}
    after = role_run(host, alation_backup_incremental=True)
    assert after.rc == 0, after.output
    record = after.records[HOST]
    assert record['mode'] == 'DELTA', record['mode_reason']
    assert record['recovered'] == {}


def test_the_freshness_guard_trusts_an_archive_not_a_lone_sha256_or_a_damaged_one(alation_host):
    host = alation_host
    assert role_run(host, alation_backup_engine='pg_basebackup').rc == 0
    [archive] = archives(host)
    # Damaged after it was written (cut short), and a .sha256 that lost its archive.
    with open(archive, 'r+b') as f:
        f.truncate(os.path.getsize(archive) // 2)
    lone = host.path('/data2/backup/209901010000_5-17-0-116556_alation_backup.tar.gz.sha256')
    with open(lone, 'w') as f:
        f.write('0' * 64 + '  209901010000_5-17-0-116556_alation_backup.tar.gz\n')
    run = role_run(host, alation_backup_engine='pg_basebackup', alation_backup_min_interval=1)
    assert run.rc == 0, run.output
    record = run.records[HOST]
    assert record['result'] == 'ok', 'a backup was taken, not skipped on a lie: %s' % record
    whys = sorted(i['why'] for i in record['ignored_archives'])
    assert whys[0] == 'a .sha256 without its archive' and 'recorded' in whys[1], whys
    assert len(archives(host)) == 2
