# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The restore modules one by one, run as Ansible runs them, against a real
PostgreSQL 15 cluster and archives the archive module wrote: what the
role-level tests do not reach (safety beside a live cluster, tablespaces,
corruption found by pg_amcheck, undoing a failed restore, a tampered archive)."""

import os
import pwd
import tarfile

import pytest

from modrun import run_module
from restoring import tamper_archive

BINDIR = '/usr/lib/postgresql/15/bin'


def owned_dir(path, user):
    os.makedirs(path, mode=0o700)
    pw = pwd.getpwnam(user)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    return path


def basebackup(cluster, scratch):
    dest = owned_dir(os.path.join(scratch, 'pgbackup'), cluster.os_user)
    result = run_module('pg_basebackup', dict(dest=dest, host=cluster.host, port=cluster.port, user=cluster.db_user,
                                              bindir=BINDIR, run_as=cluster.os_user))
    assert not result['failed'], result
    return dest


def server(cluster, pgdata, socket_dir, **extra):
    return run_module('temp_postgres', dict(dict(pgdata=pgdata, socket_dir=socket_dir, bindir=BINDIR,
                                                 run_as=cluster.os_user), **extra))


def connect(cluster, socket_dir, port):
    return dict(host=socket_dir, port=port, user=cluster.db_user, bindir=BINDIR, run_as=cluster.os_user)


def test_temp_postgres_never_starts_on_or_stops_a_server_it_did_not_start(pg_cluster, scratch):
    socket_dir = os.path.join(scratch, 'socket')
    started = server(pg_cluster, pg_cluster.pgdata, socket_dir)
    assert started['failed'] and 'this module did not start it' in started['msg'], started
    stopped = server(pg_cluster, pg_cluster.pgdata, socket_dir, state='stopped')
    assert stopped['failed'] and 'stops only servers of its own' in stopped['msg'], stopped
    assert pg_cluster.is_running()


def test_basebackup_with_a_tablespace_is_rebuilt_apart_and_checked(pg_cluster, scratch):
    live_ts = owned_dir(os.path.join(scratch, 'live_ts'), pg_cluster.os_user)
    pg_cluster.psql("create tablespace ts location '%s'" % live_ts)
    pg_cluster.psql('create table in_ts (id int) tablespace ts')
    pg_cluster.psql('insert into in_ts select generate_series(1, 1000)')
    source = basebackup(pg_cluster, scratch)
    live_before = sorted(os.listdir(live_ts))
    drill = owned_dir(os.path.join(scratch, 'drill'), pg_cluster.os_user)
    pgdata = os.path.join(drill, 'pgdata')

    preview = run_module('pgdata_restore', dict(source=source, engine='pg_basebackup', pgdata=pgdata,
                                                bindir=BINDIR, run_as=pg_cluster.os_user), check=True)
    assert not preview['failed'] and preview['changed'], preview
    assert not os.path.exists(pgdata)

    rebuilt = run_module('pgdata_restore', dict(source=source, engine='pg_basebackup', pgdata=pgdata,
                                                bindir=BINDIR, run_as=pg_cluster.os_user))
    assert not rebuilt['failed'], rebuilt
    [(oid, ts)] = rebuilt['tablespaces'].items()
    assert ts == {'old': live_ts, 'new': os.path.join(drill, 'pgdata.tablespaces', oid)}
    assert 'pg_verifybackup' in rebuilt['verified']
    assert os.readlink(os.path.join(pgdata, 'pg_tblspc', oid)) == ts['new']

    socket_dir = os.path.join(drill, 'socket')
    started = server(pg_cluster, pgdata, socket_dir)
    assert not started['failed'], started
    assert any('consistent recovery state reached' in line for line in started['consistent'])
    try:
        again = server(pg_cluster, pgdata, socket_dir)
        assert not again['failed'] and not again['changed'] and again['port'] == started['port']
        inventory = run_module('pg_inventory', dict(connect(pg_cluster, socket_dir, started['port']),
                                                    expected={'postgres': {'tables': 5}}))
        assert inventory['databases'] == {'postgres': {'tables': 5}}  # pgbench's four and in_ts
        assert inventory['comparison']['table_counts']['result'] == 'ok'
    finally:
        stopped = server(pg_cluster, pgdata, socket_dir, state='stopped')
    assert not stopped['failed'] and stopped['changed'], stopped
    # The live tablespace was never written to.
    assert sorted(os.listdir(live_ts)) == live_before


def corrupt_heap_page(path, block=1):
    with open(path, 'r+b') as f:
        f.seek(8192 * block + 24)
        f.write(bytes(range(256)) * 2)


def test_pg_amcheck_reports_corruption_and_leaves_no_extension_behind(pg_cluster, scratch):
    pg_cluster.psql('create table victim as select g as id, md5(g::text) as t from generate_series(1, 5000) g')
    relpath = pg_cluster.psql("select pg_relation_filepath('victim')")
    source = basebackup(pg_cluster, scratch)
    drill = owned_dir(os.path.join(scratch, 'drill'), pg_cluster.os_user)
    pgdata = os.path.join(drill, 'pgdata')
    socket_dir = os.path.join(drill, 'socket')
    assert not run_module('pgdata_restore', dict(source=source, engine='pg_basebackup', pgdata=pgdata,
                                                 bindir=BINDIR, run_as=pg_cluster.os_user))['failed']
    started = server(pg_cluster, pgdata, socket_dir)
    assert not started['failed'], started
    try:
        clean = run_module('pg_amcheck', connect(pg_cluster, socket_dir, started['port']))
        assert not clean['failed'] and clean['problem_count'] == 0, clean
        assert set(clean['installed']) == {'postgres', 'template1'}
        server(pg_cluster, pgdata, socket_dir, state='stopped')
        corrupt_heap_page(os.path.join(pgdata, relpath))
        started = server(pg_cluster, pgdata, socket_dir)
        assert not started['failed'], started
        found = run_module('pg_amcheck', connect(pg_cluster, socket_dir, started['port']))
        assert found['failed'] and found['problem_count'] > 0, found
        assert 'pg_amcheck found corruption' in found['msg'] and 'public.victim' in found['msg']
        left = run_module('pg_inventory', connect(pg_cluster, socket_dir, started['port']))
        assert not left['failed']
        # The extension was removed again from every database it was installed in.
        for db in ('postgres', 'template1'):
            r = run_module('pg_amcheck', dict(connect(pg_cluster, socket_dir, started['port']), install_missing=False,
                                              dbname=db))
            assert r['failed'] and 'pg_amcheck failed' in r['msg'], r
    finally:
        server(pg_cluster, pgdata, socket_dir, state='stopped')


def test_pgdata_restore_refuses_a_running_server_and_undoes_a_failed_forced_restore(pg_cluster, scratch):
    source = basebackup(pg_cluster, scratch)
    live = run_module('pgdata_restore', dict(source=source, engine='pg_basebackup', pgdata=pg_cluster.pgdata,
                                             force=True, run_as=pg_cluster.os_user))
    assert live['failed'] and 'runs on' in live['msg'], live
    assert pg_cluster.is_running()

    # A pg staging dir whose WAL is missing fails after the old pgdata was moved aside: it comes back.
    os.unlink(os.path.join(source, 'pg_wal.tar'))
    with tarfile.open(os.path.join(source, 'pg_wal.tar'), 'w'):
        pass
    old = owned_dir(os.path.join(scratch, 'old_pgdata'), pg_cluster.os_user)
    with open(os.path.join(old, 'keep'), 'w') as f:
        f.write('old')
    failed = run_module('pgdata_restore', dict(source=source, engine='pg_basebackup', pgdata=old, force=True,
                                               bindir=BINDIR, run_as=pg_cluster.os_user))
    assert failed['failed'] and 'pg_verifybackup' in failed['msg'], failed
    assert os.listdir(old) == ['keep']
    assert [n for n in os.listdir(scratch) if n.startswith('old_pgdata')] == ['old_pgdata']


@pytest.fixture
def small_archive(scratch):
    """An archive of a small staging dir and pg staging dir, written by the archive module (with its .sha256)."""
    staging = os.path.join(scratch, 'staging')
    for path, mode in ((os.path.join(staging, 'tmp'), 0o750), (os.path.join(staging, 'pgbackup'), 0o700)):
        os.makedirs(path)
        os.chmod(path, mode)
    for path, mode, data in ((os.path.join(staging, 'tmp', 'site.conf'), 0o640, '12345'),
                             (os.path.join(staging, 'pgbackup', 'f'), 0o600, 'abcde')):
        with open(path, 'w') as f:
            f.write(data)
        os.chmod(path, mode)
    backup = os.path.join(scratch, 'backup')
    os.makedirs(backup)
    written = run_module('archive', dict(sources=[dict(path=os.path.join(staging, name), arcname=name)
                                                  for name in ('tmp', 'pgbackup')],
                                         dest=backup, version_tag='5.17.0.1', timestamp='202405011230'))
    assert not written['failed'], written
    return written['path']


def test_archive_extract_strip_puts_the_source_in_place_with_its_recorded_mode(small_archive, scratch):
    dest = os.path.join(scratch, 'files')
    preview = run_module('archive_extract', dict(path=small_archive, dest=dest, members=['tmp'], strip=True),
                         check=True)
    assert not preview['failed'] and preview['changed'] and not os.path.exists(dest)
    done = run_module('archive_extract', dict(path=small_archive, dest=dest, members=['tmp'], strip=True))
    assert not done['failed'], done
    assert os.listdir(dest) == ['site.conf']
    assert oct(os.stat(dest).st_mode & 0o777) == '0o750'
    assert oct(os.stat(os.path.join(dest, 'site.conf')).st_mode & 0o777) == '0o640'
    assert not [n for n in os.listdir(scratch) if n.startswith('.files.extract')]
    again = run_module('archive_extract', dict(path=small_archive, dest=dest, members=['tmp'], strip=True))
    assert again['failed'] and 'is not empty' in again['msg']


def test_archive_extract_fails_when_the_contents_differ_from_the_manifest(small_archive, scratch):
    os.makedirs(os.path.join(scratch, 'tampered'))
    # The manifest still counts the file that is gone.
    path = tamper_archive(small_archive, os.path.join(scratch, 'tampered'),
                          lambda tree: os.unlink(os.path.join(tree, 'tmp', 'site.conf')), recount=False)
    result = run_module('archive_extract', dict(path=path, dest=os.path.join(scratch, 'out')))
    assert result['failed'], result
    assert 'tmp files: archive recorded 1, extracted 0' in result['msg']


def test_archive_info_finds_the_newest_and_checks_the_sha256(small_archive, scratch):
    backup = os.path.dirname(small_archive)
    info = run_module('archive_info', dict(dir=backup, checksum=True), check=True)
    assert not info['failed'] and info['path'] == small_archive and info['archives'] == 1
    assert info['manifest']['sources'][0]['arcname'] == 'tmp' and info['sha256'] == info['sha256_recorded']
    os.unlink(small_archive + '.sha256')
    missing = run_module('archive_info', dict(path=small_archive, checksum=True))
    assert missing['failed'] and '.sha256 is missing' in missing['msg']
    none = run_module('archive_info', dict(dir=os.path.join(scratch, 'nothing-here')))
    assert none['failed'] and 'does not exist' in none['msg']
