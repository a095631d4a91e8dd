# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_rebuild: tablespaces, checking the source, the commands it would run, and undoing a failed rebuild.

pg_probackup and pg_verifybackup are answered by doubles and pg_basebackup's
tar files are fixtures, unpacked by the real tar; the integration tests
(tests/integration/test_restore_modules.py) rebuild from real backups.
"""

import io
import os
import stat
import tarfile

import pytest

from ansible_collections.alation.backup.plugins.module_utils import _rebuild as rb
from ansible_collections.alation.backup.plugins.module_utils._restore import RestoreError

from .runner_double import program, real, runner

BACKUP_ID = 'SABC12'


# -- tablespaces ---------------------------------------------------------------------

def test_tablespace_map_round_trip():
    entries = rb.parse_tablespace_map('16410 /srv/ts one\n\n16500 /data3/ts\n')
    assert entries == [('16410', '/srv/ts one'), ('16500', '/data3/ts')]
    relocated = rb.relocated_tablespaces(entries, '/scratch/pgdata.tablespaces')
    assert relocated == {'16410': ('/srv/ts one', '/scratch/pgdata.tablespaces/16410'),
                         '16500': ('/data3/ts', '/scratch/pgdata.tablespaces/16500')}
    assert rb.tablespace_map_text(relocated) == ('16410 /scratch/pgdata.tablespaces/16410\n'
                                                 '16500 /scratch/pgdata.tablespaces/16500\n')


@pytest.mark.parametrize('text', ['16410\n', 'x /srv/ts\n', '16410 relative/path\n'])
def test_tablespace_map_refuses_odd_lines(text):
    with pytest.raises(RestoreError, match='is not "<oid> <absolute path>"'):
        rb.parse_tablespace_map(text)


def add(tar, name, data=None, mode=0o600):
    info = tarfile.TarInfo(name)
    info.mode = mode
    if data is None:
        info.type = tarfile.DIRTYPE
        info.mode = 0o700
        tar.addfile(info)
    else:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def test_tar_member_text(tmp_path):
    path = str(tmp_path / 'base.tar')
    with tarfile.open(path, 'w') as tar:
        add(tar, './PG_VERSION', b'15\n')
        add(tar, 'tablespace_map', b'16410 /srv/ts\n')
    assert rb.tar_member_text(path, 'tablespace_map') == '16410 /srv/ts\n'
    assert rb.tar_member_text(path, 'PG_VERSION') == '15\n'
    assert rb.tar_member_text(path, 'backup_label') is None


# -- fixtures: pg staging dirs of both engines --------------------------------------

def probackup_source(root, tablespaces=''):
    """A pg_probackup catalog as the archive holds it: backups/<instance>/<id>/backup.control (and its map)."""
    backup = root / 'pgbackup' / 'backups' / 'alation' / BACKUP_ID
    (backup / 'database').mkdir(parents=True)
    (backup / 'backup.control').write_text('status = OK\n')
    if tablespaces:
        (backup / 'database' / 'tablespace_map').write_text(tablespaces)
    return str(root / 'pgbackup')


def basebackup_source(root, tablespaces=True, manifest=True):
    """pg_basebackup's tar-format output: base.tar, pg_wal.tar, <oid>.tar per tablespace, backup_manifest."""
    src = root / 'pgbackup'
    src.mkdir()
    with tarfile.open(str(src / 'base.tar'), 'w') as tar:
        add(tar, 'PG_VERSION', b'15\n')
        add(tar, 'pg_wal')
        add(tar, 'pg_tblspc')
        add(tar, 'base')
        add(tar, 'base/1', b'x' * 100)
        if tablespaces:
            add(tar, 'tablespace_map', b'16410 /live/ts\n')
    with tarfile.open(str(src / 'pg_wal.tar'), 'w') as tar:
        add(tar, '000000010000000000000002', b'w' * 10)
    if tablespaces:
        with tarfile.open(str(src / '16410.tar'), 'w') as tar:
            add(tar, 'PG_15_202209061', None)
            add(tar, 'PG_15_202209061/16411', b't' * 10)
    if manifest:
        (src / 'backup_manifest').write_text('{}')
    return str(src)


def params(source, pgdata, **kw):
    p = dict(source=source, engine='pg_probackup', backup_id=BACKUP_ID, instance='alation', pgdata=pgdata,
             tablespace_dir=None, force=False, verify=True, space_check=True, binary=None, bindir=None, threads=None,
             chroot=None, run_as=None)
    p.update(kw)
    return p


def rebuild(source, pgdata, check_mode=False, programs=None, **kw):
    return rb.Rebuild(params(source, pgdata, **kw), runner(programs), check_mode=check_mode)


@pytest.fixture
def pg_probackup(tmp_path):
    return program(tmp_path / 'bin', 'pg_probackup')


def calls(core):
    return core.runner.module.calls


# -- checking the source ---------------------------------------------------------------

@pytest.mark.parametrize('engine, backup_id, match', [
    ('pg_probackup', None, 'backup_id is required for engine=pg_probackup'),
    ('pg_probackup', 'OTHER1', 'holds no pg_probackup backup OTHER1 of instance alation .*is source the unpacked'),
    ('pg_basebackup', None, 'has no base.tar: is source the unpacked pgbackup dir of a pg_basebackup backup'),
])
def test_check_source_refuses_what_is_no_backup_of_the_engine(tmp_path, engine, backup_id, match):
    source = probackup_source(tmp_path)
    core = rebuild(source, str(tmp_path / 'pgdata'), engine=engine, backup_id=backup_id)
    with pytest.raises(RestoreError, match=match):
        core.run()
    assert calls(core) == [] and not (tmp_path / 'pgdata').exists()


def test_check_source_wants_the_wal_of_a_basebackup(tmp_path):
    source = basebackup_source(tmp_path)
    os.unlink(os.path.join(source, 'pg_wal.tar'))
    with pytest.raises(RestoreError, match='has no pg_wal.tar'):
        rebuild(source, str(tmp_path / 'pgdata'), engine='pg_basebackup').run()


def test_a_running_server_is_refused_before_anything(tmp_path, pg_probackup):
    pgdata = tmp_path / 'pgdata'
    pgdata.mkdir()
    (pgdata / 'postmaster.pid').write_text('%d\n' % os.getpid())
    core = rebuild(probackup_source(tmp_path), str(pgdata), force=True, binary=pg_probackup)
    with pytest.raises(RestoreError, match='a PostgreSQL server \\(pid %d\\) runs on .*stop it' % os.getpid()):
        core.run()
    assert os.listdir(pgdata) == ['postmaster.pid'] and calls(core) == []


# -- pg_probackup: the command, the tablespaces, the binary ----------------------------------

def test_probackup_restore_argv_with_tablespaces_moved_apart(tmp_path, pg_probackup):
    source = probackup_source(tmp_path, tablespaces='16500 /data3/b\n16410 /data3/a\n')
    pgdata = str(tmp_path / 'pgdata')
    core = rebuild(source, pgdata, binary=pg_probackup, threads=3)
    result = core.run()
    ts = pgdata + '.tablespaces'
    assert calls(core) == [[pg_probackup, 'restore', '-B', source, '--instance', 'alation', '-D', pgdata,
                            '-i', BACKUP_ID, '-j', '3',
                            '--tablespace-mapping=/data3/a=%s/16410' % ts,
                            '--tablespace-mapping=/data3/b=%s/16500' % ts]]
    assert result['tablespaces'] == {'16410': dict(old='/data3/a', new=ts + '/16410'),
                                     '16500': dict(old='/data3/b', new=ts + '/16500')}
    assert result['changed'] and result['verified'].startswith('pg_probackup restore')
    assert result['moved_aside'] is None and result['moved_aside_tablespaces'] is None
    for path in (pgdata, ts, ts + '/16410'):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o700


def test_threads_default_to_the_cpu_count(tmp_path, pg_probackup):
    core = rebuild(probackup_source(tmp_path), str(tmp_path / 'pgdata'), binary=pg_probackup)
    core.run()
    assert calls(core)[0][calls(core)[0].index('-j') + 1] == str(os.cpu_count() or 1)


def test_a_tablespace_dir_of_ones_own(tmp_path, pg_probackup):
    source = probackup_source(tmp_path, tablespaces='16410 /data3/a\n')
    result = rebuild(source, str(tmp_path / 'pgdata'), binary=pg_probackup,
                     tablespace_dir=str(tmp_path / 'ts')).run()
    assert result['tablespaces']['16410']['new'] == str(tmp_path / 'ts' / '16410')


@pytest.mark.parametrize('binary, match', [
    ('/nowhere/pg_probackup', r'/nowhere/pg_probackup is not an executable file\. Install pg_probackup or set binary'),
    ('pg_probackup_not_here', 'pg_probackup_not_here not found: looked for pg_probackup_not_here in .*Install'),
])
def test_binary_lookup_errors_say_what_to_do(tmp_path, binary, match):
    pgdata = tmp_path / 'pgdata'
    core = rebuild(probackup_source(tmp_path), str(pgdata), binary=binary)
    with pytest.raises(RestoreError, match=match):
        core.run()
    assert not pgdata.exists()  # the empty pgdata it made is removed again


# -- check mode ------------------------------------------------------------------------

def test_check_mode_plans_the_command_and_the_move_aside_and_writes_nothing(tmp_path, pg_probackup):
    source = probackup_source(tmp_path, tablespaces='16410 /data3/a\n')
    pgdata = tmp_path / 'pgdata'
    pgdata.mkdir()
    (pgdata / 'old').write_text('old')
    core = rebuild(source, str(pgdata), check_mode=True, force=True, binary=pg_probackup, threads=2)
    result = core.run()
    assert result['changed'] and result['moved_aside'].startswith(str(pgdata) + '.before-restore-')
    [cmd] = result['executed_commands']
    assert cmd.startswith('%s restore -B %s --instance alation -D %s -i %s -j 2 --tablespace-mapping=/data3/a='
                          % (pg_probackup, source, pgdata, BACKUP_ID))
    assert cmd.endswith('  (check mode: not run)') and 'duration_s' not in result
    assert calls(core) == [] and os.listdir(pgdata) == ['old']
    assert sorted(os.listdir(tmp_path)) == ['bin', 'pgbackup', 'pgdata']


def test_check_mode_before_the_source_is_unpacked(tmp_path):
    core = rebuild(str(tmp_path / 'not-yet'), str(tmp_path / 'pgdata'), check_mode=True, engine='pg_basebackup')
    result = core.run()
    assert result['changed'] and result['bytes'] == 0 and result['tablespaces'] == {}
    assert [c.split()[:4] for c in result['executed_commands']] == [
        ['tar', '-x', '-f', str(tmp_path / 'not-yet' / 'base.tar')],
        ['tar', '-x', '-f', str(tmp_path / 'not-yet' / 'pg_wal.tar')]]


def test_check_mode_still_refuses_a_non_empty_pgdata_without_force(tmp_path, pg_probackup):
    pgdata = tmp_path / 'pgdata'
    pgdata.mkdir()
    (pgdata / 'old').write_text('old')
    with pytest.raises(RestoreError, match='is not empty'):
        rebuild(probackup_source(tmp_path), str(pgdata), check_mode=True, binary=pg_probackup).run()


# -- a failed rebuild is undone --------------------------------------------------------

PROBACKUP_STDERR = ('INFO: Validating backup %s\n'
                    'WARNING: Backup file "/x/database/base/1/1259" is not found\n'
                    'WARNING: Backup file "/x/database/base/1/1259" is not found\n'
                    'WARNING: some other warning\n'
                    'ERROR: Backup %s is corrupt\n' % (BACKUP_ID, BACKUP_ID))


def failing_probackup(argv):
    # Writes before it fails, as a restore stopped half-way would.
    pgdata = argv[argv.index('-D') + 1]
    with open(os.path.join(pgdata, 'half'), 'w') as f:
        f.write('half')
    return 1, '', PROBACKUP_STDERR


def test_failed_restore_puts_back_what_it_moved_aside(tmp_path, pg_probackup):
    source = probackup_source(tmp_path, tablespaces='16410 /data3/a\n')
    pgdata, ts = tmp_path / 'pgdata', tmp_path / 'pgdata.tablespaces'
    for path in (pgdata, ts):
        path.mkdir()
        (path / 'old').write_text('old')
    core = rebuild(source, str(pgdata), force=True, binary=pg_probackup,
                   programs={'pg_probackup': failing_probackup})
    with pytest.raises(RestoreError) as e:
        core.run()
    assert str(e.value) == ('pg_probackup restore of backup %s failed with exit code 1: ERROR: Backup %s is corrupt '
                            '(Backup file "/x/database/base/1/1259" is not found)' % (BACKUP_ID, BACKUP_ID))
    assert os.listdir(pgdata) == ['old'] and os.listdir(ts) == ['old']
    assert sorted(os.listdir(tmp_path)) == ['bin', 'pgbackup', 'pgdata', 'pgdata.tablespaces']
    assert core.result['changed'] and core.warnings == []


def test_failed_restore_empties_an_empty_pgdata_again_and_keeps_it(tmp_path, pg_probackup):
    pgdata = tmp_path / 'pgdata'
    pgdata.mkdir()
    core = rebuild(probackup_source(tmp_path), str(pgdata), binary=pg_probackup,
                   programs={'pg_probackup': failing_probackup})
    with pytest.raises(RestoreError, match='failed with exit code 1'):
        core.run()
    assert os.listdir(pgdata) == []


# -- pg_basebackup: real tar on fixture tars, pg_verifybackup's double ----------------------

def test_basebackup_unpacks_relinks_tablespaces_and_verifies(tmp_path):
    source = basebackup_source(tmp_path)
    verify = program(tmp_path / 'bin', 'pg_verifybackup')
    pgdata = str(tmp_path / 'drill' / 'pgdata')
    core = rebuild(source, pgdata, engine='pg_basebackup', backup_id=None, bindir=str(tmp_path / 'bin'),
                   programs={'tar': real})
    result = core.run()
    new = pgdata + '.tablespaces/16410'
    assert result['tablespaces'] == {'16410': dict(old='/live/ts', new=new)}
    assert os.readlink(os.path.join(pgdata, 'pg_tblspc', '16410')) == new
    with open(os.path.join(pgdata, 'tablespace_map')) as f:
        assert f.read() == '16410 %s\n' % new
    assert os.listdir(os.path.join(pgdata, 'pg_wal')) == ['000000010000000000000002']
    assert os.listdir(os.path.join(new, 'PG_15_202209061')) == ['16411']
    assert calls(core)[-1] == [verify, '-m', os.path.join(source, 'backup_manifest'), '-i', 'tablespace_map', pgdata]
    assert result['verified'].startswith('pg_verifybackup') and result['bytes'] > 0


def test_basebackup_without_pg_verifybackup_warns(tmp_path):
    source = basebackup_source(tmp_path, tablespaces=False)
    (tmp_path / 'empty-bin').mkdir()
    core = rebuild(source, str(tmp_path / 'pgdata'), engine='pg_basebackup', bindir=str(tmp_path / 'empty-bin'),
                   programs={'tar': real})
    result = core.run()
    assert result['verified'] is None and core.warnings == [
        'pg_verifybackup not found (PostgreSQL 13 and later have it): the rebuilt data directory was not checked '
        'against backup_manifest']
    assert [c[0] for c in calls(core)] == ['tar', 'tar']


def test_basebackup_verify_off_or_no_manifest_runs_no_check(tmp_path):
    source = basebackup_source(tmp_path, tablespaces=False, manifest=False)
    program(tmp_path / 'bin', 'pg_verifybackup')
    core = rebuild(source, str(tmp_path / 'pgdata'), engine='pg_basebackup', bindir=str(tmp_path / 'bin'),
                   programs={'tar': real})
    assert core.run()['verified'] is None and core.warnings == []


def test_basebackup_that_fails_verification_is_removed_again(tmp_path):
    source = basebackup_source(tmp_path)
    program(tmp_path / 'bin', 'pg_verifybackup')
    stderr = ('pg_verifybackup: error: "base/1/2" is present on disk but not in the manifest\n'
              'pg_verifybackup: error: "base/1/3" has size 0 on disk but size 8192 in the manifest\n')
    pgdata = tmp_path / 'pgdata'
    core = rebuild(source, str(pgdata), engine='pg_basebackup', bindir=str(tmp_path / 'bin'),
                   programs={'tar': real, 'pg_verifybackup': lambda argv: (1, '', stderr)})
    with pytest.raises(RestoreError) as e:
        core.run()
    assert str(e.value) == (
        'the rebuilt data directory does not match the backup: pg_verifybackup failed with exit code 1: '
        'pg_verifybackup: error: "base/1/2" is present on disk but not in the manifest '
        'pg_verifybackup: error: "base/1/3" has size 0 on disk but size 8192 in the manifest')
    assert sorted(os.listdir(tmp_path)) == ['bin', 'pgbackup']


def test_basebackup_tar_failure_names_the_tar_file(tmp_path):
    source = basebackup_source(tmp_path, tablespaces=False)
    with open(os.path.join(source, 'pg_wal.tar'), 'wb') as f:
        f.write(b'no tar at all' * 100)
    core = rebuild(source, str(tmp_path / 'pgdata'), engine='pg_basebackup', programs={'tar': real})
    with pytest.raises(RestoreError, match='tar unpacking %s failed with exit code 2: tar: This does not look like '
                                           'a tar archive' % os.path.join(source, 'pg_wal.tar')):
        core.run()
    assert not (tmp_path / 'pgdata').exists()
