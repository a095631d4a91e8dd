# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pg_probackup module run for real: real pg_probackup, real PostgreSQL 15 cluster.

Each test starts its own cluster (fixture ``pg_cluster``) and runs the module
in its own process (tests/support/modrun.py), as the cluster's OS user
(pg_probackup reads PGDATA, so it runs as its owner). A stream backup takes
about 10 s whatever its size (pg_probackup's WAL streamer notices the end only
at its 10 s status interval), so the suite keeps the number of backups small.
"""

import glob
import os
import pwd
import signal
import subprocess
import time

import pytest

from modrun import run_module, spawn_module
from pgcluster import PgCluster

from ansible_collections.alation.backup.plugins.module_utils._locks import FileLock

pytestmark = pytest.mark.pg_probackup

SECRET = 'not-on-the-command-line-42'


@pytest.fixture
def catalog(scratch, pg_cluster):
    """The catalog path (absent); its parent is owned by the cluster's OS user."""
    parent = os.path.join(scratch, 'backup')
    os.mkdir(parent)
    pw = pwd.getpwnam(pg_cluster.os_user)
    os.chown(parent, pw.pw_uid, pw.pw_gid)
    return os.path.join(parent, 'pgbackup')


def module_args(cluster, catalog, binary, **kw):
    args = dict(catalog=catalog, pgdata=cluster.pgdata, run_as=cluster.os_user, binary=binary,
                host=cluster.host, port=cluster.port, user=cluster.db_user, dbname='postgres', password=SECRET)
    args.update(kw)
    return args


def pg_probackup(cluster, binary, *argv, check=True):
    """Run the real pg_probackup directly (not through the module) as the cluster's owner."""
    return cluster.as_owner([binary] + list(argv), check=check)


def show(cluster, binary, catalog):
    import json
    r = pg_probackup(cluster, binary, 'show', '-B', catalog, '--instance', 'alation', '--format=json')
    return [(b['id'], b['backup-mode'], b['status']) for b in json.loads(r.stdout)[0]['backups']]


def tree_snapshot(path):
    """Every path below ``path`` with its size and mtime: to prove nothing was written."""
    snap = {}
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            full = os.path.join(root, name)
            st = os.lstat(full)
            snap[full] = (st.st_size, st.st_mtime_ns)
    return snap


def wait_running(catalog, timeout=30):
    """(backup id, pg_probackup pid) once a backup dir shows RUNNING with its backup.pid."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid_file in glob.glob(os.path.join(catalog, 'backups', 'alation', '*', 'backup.pid')):
            bdir = os.path.dirname(pid_file)
            try:
                with open(pid_file) as f:
                    pid = f.read().strip()
                with open(os.path.join(bdir, 'backup.control')) as f:
                    running = 'status = RUNNING' in f.read()
            except OSError:
                continue
            if pid.isdigit() and running:
                return os.path.basename(bdir), int(pid)
        time.sleep(0.05)
    raise AssertionError('no RUNNING backup appeared in %s within %ss' % (catalog, timeout))


def verbs(result):
    """The pg_probackup subcommand of each command the module ran."""
    out = []
    for cmd in result['executed_commands']:
        words = cmd.split()
        out.append(next(words[i + 1] for i, w in enumerate(words) if os.path.basename(w) == 'pg_probackup'))
    return out


def assert_ok(result):
    assert not result['failed'], result.get('msg')
    assert all(SECRET not in c for c in result['executed_commands'])


def kill_backup_midway(cluster, catalog, binary):
    """Spawn a FULL through the module, SIGKILL pg_probackup and the module once it is RUNNING."""
    proc, path = spawn_module('pg_probackup', module_args(cluster, catalog, binary, backup_mode='full'))
    try:
        backup_id, pid = wait_running(catalog)
        os.kill(pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        os.unlink(path)
    return backup_id, pid


def test_full_then_delta_check_mode_validate_restore_absent(pg_cluster, catalog, pg_probackup_bin, scratch):
    args = module_args(pg_cluster, catalog, pg_probackup_bin)

    # Catalog missing: check mode predicts init + FULL and writes nothing (only a read-only show runs).
    parent_before = os.listdir(os.path.dirname(catalog))
    r = run_module('pg_probackup', args, check=True)
    assert_ok(r)
    assert r['changed'] and r['mode_taken'] == 'FULL' and r['reason'] == 'the catalog has no backup yet'
    assert verbs(r) == ['show']
    assert os.listdir(os.path.dirname(catalog)) == parent_before

    r = run_module('pg_probackup', args)
    assert_ok(r)
    assert r['changed'] and r['mode_taken'] == 'FULL'
    assert verbs(r) == ['show', 'init', 'add-instance', 'backup', 'validate', 'show']
    assert r['backup']['mode'] == 'FULL' and r['backup']['status'] == 'OK' and r['backup']['parent'] is None
    assert r['backup']['data_bytes'] > 0 and r['backup']['wal'] == 'STREAM'
    assert '-i %s' % r['backup']['id'] in r['executed_commands'][4]
    assert any('data block checksums' in w for w in r['tool_warnings'])
    assert r['duration_s'] > 5
    full_id = r['backup']['id']
    assert not os.path.exists(os.path.join(os.path.dirname(catalog), '.pgbackup.lock')), 'the lock leaves nothing'

    pg_cluster.psql('CREATE TABLE after_full AS SELECT g FROM generate_series(1, 1234) g')

    # Check mode with a good chain: DELTA predicted, catalog untouched.
    before = tree_snapshot(catalog)
    r = run_module('pg_probackup', args, check=True)
    assert_ok(r)
    assert r['changed'] and r['mode_taken'] == 'DELTA' and full_id in r['reason']
    assert tree_snapshot(catalog) == before

    r = run_module('pg_probackup', args)
    assert_ok(r)
    assert r['mode_taken'] == 'DELTA'
    assert r['reason'].startswith('DELTA on %s: 2 of 7 in this chain, whose FULL %s is 0.0 days old' % (full_id, full_id))
    assert r['pruned'] == [] and r['prune_error'] == ''
    assert 'init' not in verbs(r)
    assert r['backup']['mode'] == 'DELTA' and r['backup']['parent'] == full_id and r['backup']['status'] == 'OK'
    assert [b['id'] for b in r['backups']] == [r['backup']['id'], full_id]
    delta_id = r['backup']['id']

    # validate: the newest backup, by id; already OK, so nothing changes.
    r = run_module('pg_probackup', dict(args, state='validate'))
    assert_ok(r)
    assert not r['changed'] and r['backup']['id'] == delta_id
    assert verbs(r) == ['show', 'validate', 'show']
    assert '-i %s' % delta_id in r['executed_commands'][1]

    r = run_module('pg_probackup', dict(args, state='show'))
    assert_ok(r)
    assert not r['changed'] and r['catalog_state'] == 'catalog' and r['instance_exists']
    assert r['catalog'][0]['instance'] == 'alation' and len(r['catalog'][0]['backups']) == 2
    assert r['next_mode'] == 'DELTA' and not r['broken'] and r['in_flight'] == []

    # Restore the newest backup into a scratch dir and start it: the data is all there.
    restored = PgCluster(os.path.join(scratch, 'restored'))
    os.makedirs(restored.base_dir)
    pw = pwd.getpwnam(pg_cluster.os_user)
    os.chown(restored.base_dir, pw.pw_uid, pw.pw_gid)
    pg_probackup(pg_cluster, pg_probackup_bin, 'restore', '-B', catalog, '--instance', 'alation',
                 '-D', restored.pgdata, '-j', '2')
    try:
        restored.start()
        assert restored.psql('select count(*) from pgbench_accounts') == \
            pg_cluster.psql('select count(*) from pgbench_accounts')
        assert restored.psql('select count(*) from after_full') == '1234'
        assert restored.psql('select pg_is_in_recovery()') == 'f'
    finally:
        restored.stop('immediate')

    r = run_module('pg_probackup', dict(args, state='absent'), check=True)
    assert_ok(r)
    assert r['changed'] and os.path.isdir(catalog)
    r = run_module('pg_probackup', dict(args, state='absent'))
    assert_ok(r)
    assert r['changed'] and not os.path.exists(catalog)
    r = run_module('pg_probackup', dict(args, state='absent'))
    assert_ok(r)
    assert not r['changed']


def test_killed_backup_then_reset(pg_cluster, catalog, pg_probackup_bin):
    args = module_args(pg_cluster, catalog, pg_probackup_bin)
    r = run_module('pg_probackup', args)
    assert_ok(r)
    first = r['backup']['id']
    killed, pid = kill_backup_midway(pg_cluster, catalog, pg_probackup_bin)
    assert show(pg_cluster, pg_probackup_bin, catalog)[0] == (killed, 'FULL', 'RUNNING')

    # check mode reports the reset it would do, and does nothing.
    before = tree_snapshot(catalog)
    r = run_module('pg_probackup', args, check=True)
    assert_ok(r)
    assert r['recovered']['action'] == 'reset' and r['mode_taken'] == 'FULL'
    assert r['recovered']['broken'] == [dict(id=killed, status='RUNNING',
                                             reason='backup %s is RUNNING but its process %d is gone' % (killed, pid))]
    assert tree_snapshot(catalog) == before

    # on_broken_chain defaults to reset; without pgdata the reset re-adds the instance with its configured one.
    no_pgdata = dict(args)
    del no_pgdata['pgdata']
    r = run_module('pg_probackup', no_pgdata)
    assert_ok(r)
    assert r['changed'] and r['mode_taken'] == 'FULL' and r['reason'].startswith('catalog reset')
    assert sorted(r['recovered']['deleted']) == sorted([first, killed])
    assert verbs(r) == ['show', 'show-config', 'init', 'add-instance', 'backup', 'validate', 'show']
    assert '-D %s' % pg_cluster.pgdata in r['executed_commands'][3]
    assert [(b['id'], b['status']) for b in r['backups']] == [(r['backup']['id'], 'OK')]
    # The catalog validates as a whole again (no leftover RUNNING or ERROR entry).
    pg_probackup(pg_cluster, pg_probackup_bin, 'validate', '-B', catalog, '--instance', 'alation')


def test_killed_backup_then_repair(pg_cluster, catalog, pg_probackup_bin):
    args = module_args(pg_cluster, catalog, pg_probackup_bin)
    r = run_module('pg_probackup', args)
    assert_ok(r)
    first = r['backup']['id']

    proc, path = spawn_module('pg_probackup', dict(args, backup_mode='full'))
    try:
        killed, pid = wait_running(catalog)
        # A second run while the first holds the lock: refused at once, naming the holder.
        r = run_module('pg_probackup', args)
        assert r['failed']
        assert r['msg'].startswith('another backup of this catalog is running (pid %d)' % proc.pid)
        assert r['executed_commands'] == []
        # state=show takes no lock and sees the backup in flight.
        r = run_module('pg_probackup', dict(args, state='show'))
        assert_ok(r)
        assert r['in_flight'] == [dict(id=killed, pid=pid)] and r['next_mode'] is None
        os.kill(pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        os.unlink(path)

    # on_broken_chain=fail says which backup is broken and what to run; touches nothing.
    before = tree_snapshot(catalog)
    r = run_module('pg_probackup', dict(args, on_broken_chain='fail'))
    assert r['failed']
    assert 'backup %s is RUNNING but its process %d is gone' % (killed, pid) in r['msg']
    assert 'pg_probackup delete -B %s --instance alation --status=RUNNING' % catalog in r['msg']
    assert tree_snapshot(catalog) == before

    r = run_module('pg_probackup', dict(args, on_broken_chain='repair'))
    assert_ok(r)
    assert r['recovered'] == dict(action='repair', deleted=[killed], broken=[dict(
        id=killed, status='RUNNING', reason='backup %s is RUNNING but its process %d is gone' % (killed, pid))])
    assert r['mode_taken'] == 'DELTA' and r['reason'].startswith('broken entries deleted')
    assert '--status=RUNNING' in ' '.join(r['executed_commands'])
    assert r['backup']['parent'] == first
    assert [(b['id'], b['status']) for b in r['backups']] == [(r['backup']['id'], 'OK'), (first, 'OK')]
    pg_probackup(pg_cluster, pg_probackup_bin, 'validate', '-B', catalog, '--instance', 'alation')


def test_instance_missing_live_backup_server_down(pg_cluster, catalog, pg_probackup_bin):
    args = module_args(pg_cluster, catalog, pg_probackup_bin)
    # Catalog initialised, instance not added: only add-instance runs.
    pg_probackup(pg_cluster, pg_probackup_bin, 'init', '-B', catalog)
    r = run_module('pg_probackup', args)
    assert_ok(r)
    assert verbs(r)[:3] == ['show', 'add-instance', 'backup']
    full_id = r['backup']['id']

    # A backup started outside this module (so outside its lock) is in flight: refuse, touch nothing.
    outside = subprocess.Popen(['runuser', '-u', pg_cluster.os_user, '--', pg_probackup_bin, 'backup', '-B', catalog,
                                '--instance', 'alation', '-b', 'DELTA', '--stream', '-h', pg_cluster.host,
                                '-p', str(pg_cluster.port), '-U', pg_cluster.db_user, '-d', 'postgres'],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        running_id, pid = wait_running(catalog)
        for policy in ('reset', 'repair'):
            r = run_module('pg_probackup', dict(args, on_broken_chain=policy))
            assert r['failed']
            assert 'backup %s of instance alation is RUNNING in live process %d' % (running_id, pid) in r['msg']
    finally:
        assert outside.wait(timeout=120) == 0, outside.stderr.read()
    assert show(pg_cluster, pg_probackup_bin, catalog)[0] == (running_id, 'DELTA', 'OK')

    # Server down: a clear failure, and the ERROR entry it left is deleted at once.
    pg_cluster.stop()
    try:
        r = run_module('pg_probackup', args)
    finally:
        pg_cluster.start()
    assert r['failed'] and r['rc'] == 1
    assert r['msg'].startswith('pg_probackup backup failed with exit code 1: ERROR: could not connect to database')
    assert 'Connection refused' in r['msg'] and 'Connection refused' in r['stderr']
    assert r['discarded']['status'] == 'ERROR' and r['discarded']['deleted']
    assert 'was deleted, so the catalog stays usable' in r['msg']
    assert [s for i, m, s in show(pg_cluster, pg_probackup_bin, catalog)] == ['OK', 'OK']

    # Wrong role: clear failure too.
    r = run_module('pg_probackup', dict(args, user='nosuchrole'))
    assert r['failed'] and 'role "nosuchrole" does not exist' in r['msg'] and 'hint: set user' in r['msg']

    # A role that needs a password: it reaches pg_probackup through PGPASSWORD only.
    pg_cluster.psql("CREATE ROLE pw_backup LOGIN SUPERUSER REPLICATION PASSWORD '%s'" % SECRET)
    hba = os.path.join(pg_cluster.pgdata, 'pg_hba.conf')
    with open(hba) as f:
        rules = f.read()
    with open(hba, 'w') as f:
        f.write('host all pw_backup 127.0.0.1/32 scram-sha-256\n'
                'host replication pw_backup 127.0.0.1/32 scram-sha-256\n' + rules)
    pg_cluster.psql('SELECT pg_reload_conf()')
    args = dict(args, user='pw_backup')
    r = run_module('pg_probackup', dict(args, password='wrong'))
    assert r['failed'] and 'password authentication failed' in r['msg'] and 'hint: check user and password' in r['msg']

    # ... and the next run goes on incrementally: no reset, nothing lost.
    r = run_module('pg_probackup', args)
    assert_ok(r)
    assert r['mode_taken'] == 'DELTA' and r['recovered'] == {}
    assert r['backup']['parent'] == running_id
    assert [b['id'] for b in r['backups']] == [r['backup']['id'], running_id, full_id]
    pg_probackup(pg_cluster, pg_probackup_bin, 'validate', '-B', catalog, '--instance', 'alation')


def test_lock_wait_then_refusal(pg_cluster, catalog, pg_probackup_bin):
    args = module_args(pg_cluster, catalog, pg_probackup_bin, lock_timeout=1)
    with FileLock(os.path.join(os.path.dirname(catalog), '.pgbackup.lock'), purpose='test holder'):
        t0 = time.monotonic()
        r = run_module('pg_probackup', args)
        waited = time.monotonic() - t0
    assert r['failed'] and waited >= 1
    assert r['msg'].startswith('another backup of this catalog is running (pid %d)' % os.getpid())
    assert 'test holder' in r['msg'] and 'lock_timeout=1' in r['msg']
    assert not os.path.exists(catalog)


def test_non_empty_foreign_dir_is_refused_not_deleted(pg_cluster, catalog, pg_probackup_bin):
    os.mkdir(catalog)
    with open(os.path.join(catalog, 'precious.txt'), 'w') as f:
        f.write('keep me')
    args = module_args(pg_cluster, catalog, pg_probackup_bin)
    for state in ('backup', 'absent'):
        r = run_module('pg_probackup', dict(args, state=state))
        assert r['failed']
        assert 'is not empty and is not a pg_probackup catalog' in r['msg'] and 'nothing was deleted' in r['msg']
    r = run_module('pg_probackup', dict(args, state='show'))
    assert_ok(r)
    assert r['catalog_state'] == 'foreign' and r['catalog'] == [] and r['backups'] == []
    with open(os.path.join(catalog, 'precious.txt')) as f:
        assert f.read() == 'keep me'


def test_missing_catalog_reads_as_empty_and_forced_delta_refused(pg_cluster, catalog, pg_probackup_bin):
    args = module_args(pg_cluster, catalog, pg_probackup_bin)
    r = run_module('pg_probackup', dict(args, state='show'))
    assert_ok(r)
    assert r['catalog_state'] == 'absent' and r['catalog'] == [] and not r['instance_exists']
    assert r['next_mode'] == 'FULL'
    # An incremental with nothing to build on fails before pg_probackup runs (it would leave an ERROR entry).
    r = run_module('pg_probackup', dict(args, backup_mode='delta'))
    assert r['failed'] and 'backup_mode=auto or full' in r['msg']
    assert verbs(r) == ['show']
    assert not os.path.exists(catalog)
    r = run_module('pg_probackup', dict(args, state='validate'))
    assert r['failed'] and 'no OK or DONE backup of instance alation to validate' in r['msg']


def test_catalog_dir_not_writable_by_run_as_is_a_clear_failure(pg_cluster, pg_probackup_bin, scratch):
    # pg_probackup 2.5.15 init exits 0 ("successfully initialized") when it cannot create the catalog. The module
    # makes a missing catalog dir for run_as; one made by someone else, that run_as cannot write, stays so.
    parent = os.path.join(scratch, 'root-owned')
    os.mkdir(parent, 0o755)
    catalog = os.path.join(parent, 'pgbackup')
    os.mkdir(catalog, 0o755)
    r = run_module('pg_probackup', module_args(pg_cluster, catalog, pg_probackup_bin))
    assert r['failed']
    assert 'pg_probackup init exited 0 but catalog %s was not created' % catalog in r['msg']
    assert 'run_as=%s' % pg_cluster.os_user in r['msg']
    assert verbs(r) == ['show', 'init']
