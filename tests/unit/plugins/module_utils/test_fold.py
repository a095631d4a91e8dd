# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cores that let the backup role drop tasks (issue 19): a dir made or emptied by the step that uses it, a
fresh pg_probackup catalog, the table counts right after a backup."""

import json
import os
import stat

import pytest

from ansible_collections.alation.backup.plugins.module_utils import _locks, _pg_inventory, _staging
from ansible_collections.alation.backup.plugins.module_utils import _pg_probackup as pp

from .runner_double import runner
from .test_pg_probackup import fake_pg_probackup  # noqa: F401 pylint: disable=unused-import
from .test_pg_probackup_chain import T0, FakeProbackup, add_instance, base36, chain, params


def mode_of(path):
    return stat.S_IMODE(os.lstat(str(path)).st_mode)


# -- making and emptying a dir ------------------------------------------------------------------

def test_make_dir_makes_parents_and_sets_the_mode_whatever_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        assert _staging.make_dir(str(tmp_path / 'a' / 'b' / 'dir'), 0o755)
    finally:
        os.umask(old)
    assert mode_of(tmp_path / 'a' / 'b' / 'dir') == 0o755
    # An existing one is left as it is.
    os.chmod(str(tmp_path / 'a' / 'b' / 'dir'), 0o750)
    assert not _staging.make_dir(str(tmp_path / 'a' / 'b' / 'dir'), 0o755)
    assert mode_of(tmp_path / 'a' / 'b' / 'dir') == 0o750


def test_make_dir_owner(tmp_path):
    if os.geteuid() != 0:
        pytest.skip('chown needs root')
    path = str(tmp_path / 'work' / 'dir')
    assert _staging.make_dir(path, 0o700, 4242, 4343)
    st = os.lstat(path)
    assert (st.st_uid, st.st_gid, mode_of(path)) == (4242, 4343, 0o700)


def test_fix_dir_refuses_a_symlink(tmp_path):
    (tmp_path / 'real').mkdir(mode=0o755)
    (tmp_path / 'link').symlink_to(str(tmp_path / 'real'))
    with pytest.raises(OSError):
        _staging.fix_dir(str(tmp_path / 'link'), 0o700)
    assert mode_of(tmp_path / 'real') == 0o755


def staged(tmp_path):
    """A dir holding a file, a subdir and a link out of it (whose target must stay)."""
    outside = tmp_path / 'outside'
    outside.mkdir()
    (outside / 'precious').write_text('keep')
    d = tmp_path / 'stage' / 'pgbackup'
    (d / 'sub').mkdir(parents=True)
    (d / 'sub' / 'base.tar').write_bytes(b'x' * 10)
    (d / 'earlier').write_text('old')
    (d / 'out').symlink_to(str(outside))
    os.chmod(str(d), 0o755)
    return d, outside


def test_fresh_dir_empties_keeps_the_dir_and_never_follows_a_link(tmp_path):
    d, outside = staged(tmp_path)
    changed, tree = _staging.fresh_dir(str(d), 0o700)
    assert changed and os.listdir(str(d)) == [] and mode_of(d) == 0o700
    assert (tree.files, tree.dirs, tree.bytes) == (3, 1, 13)
    assert (outside / 'precious').read_text() == 'keep'
    # Again: nothing to do.
    assert not _staging.fresh_dir(str(d), 0o700)[0]


def test_fresh_dir_dry_run_touches_nothing(tmp_path):
    d, dummy = staged(tmp_path)
    changed, tree = _staging.fresh_dir(str(d), 0o700, dry_run=True)
    assert changed and tree.files == 3 and sorted(os.listdir(str(d))) == ['earlier', 'out', 'sub']
    assert mode_of(d) == 0o755
    changed, tree = _staging.fresh_dir(str(tmp_path / 'stage' / 'new'), 0o700, dry_run=True)
    assert changed and not (tmp_path / 'stage' / 'new').exists()


def test_fresh_dir_makes_a_missing_dir(tmp_path):
    changed, dummy = _staging.fresh_dir(str(tmp_path / 'stage' / 'deeper' / 'pgbackup'), 0o700)
    assert changed and mode_of(tmp_path / 'stage' / 'deeper' / 'pgbackup') == 0o700


@pytest.mark.parametrize('path, words', [
    ('/tmp', 'it is the system directory /tmp'),
    ('/data2', 'fewer than two path components'),
    ('/etc/pgbackup', 'directly inside the system directory /etc'),
])
def test_fresh_dir_refuses_what_the_staging_rules_refuse(path, words):
    with pytest.raises(_staging.Refused) as e:
        _staging.fresh_dir(path, 0o700, dry_run=True)
    assert words in str(e.value)


def test_fresh_dir_refuses_a_symlink(tmp_path):
    d, outside = staged(tmp_path)
    link = tmp_path / 'stage' / 'link'
    link.symlink_to(str(d))
    with pytest.raises(_staging.Refused) as e:
        _staging.fresh_dir(str(link), 0o700)
    assert 'it is a symlink' in str(e.value) and (d / 'earlier').exists()


def test_fresh_dir_checks_the_lease_before_removing(tmp_path):
    d, dummy = staged(tmp_path)

    def lost():
        raise RuntimeError('lease lost')

    with pytest.raises(RuntimeError):
        _staging.fresh_dir(str(d), 0o700, check=lost)
    assert (d / 'earlier').exists()


# -- a fresh pg_probackup catalog -----------------------------------------------------------------

class InitProbackup(FakeProbackup):
    """The double of the chain tests, whose init makes backups/ and wal/ as the real one does."""

    def __call__(self, argv):
        if argv[1] == 'init':
            for sub in ('backups', 'wal'):
                os.mkdir(os.path.join(argv[argv.index('-B') + 1], sub))
            return 0, '', 'INFO: Backup catalog was successfully initialized\n'
        return super(InitProbackup, self).__call__(argv)


@pytest.fixture
def catalog(tmp_path):
    root = tmp_path / 'backup'
    add_instance(root / 'pgbackup')
    fake = InitProbackup(chain(3))
    fake.now = T0 + 3600 * 5
    cat = pp.Catalog(runner({'pg_probackup': fake}), '/usr/bin/pg_probackup', str(root / 'pgbackup'), 'alation')
    return cat, fake


def commands(cat):
    return [c[1] for c in cat.runner.module.calls]


def test_one_shape_of_a_backup(catalog):
    cat, fake = catalog
    res = pp.run_backup(cat, params(full_every=0, full_every_days=0), False, now=fake.now + 30)
    assert res['engine'] == 'pg_probackup' and res['mode'] == 'DELTA' == res['mode_taken']
    assert res['backup_id'] == res['backup']['id'] == base36(fake.now)
    assert res['recovered'] == {} and res['pruned'] == [] and res['reason'].startswith('DELTA on')
    assert not res['fresh_removed'] and not res['made_catalog_dir']


def test_fresh_removes_the_catalog_then_backs_up_into_a_new_one(catalog):
    cat, fake = catalog
    os.makedirs(os.path.join(cat.host_catalog, 'backups', 'alation', 'OLD'))
    with open(os.path.join(cat.host_catalog, 'backups', 'alation', 'OLD', 'backup.control'), 'w') as f:
        f.write('status = OK\n')
    fake.backups = []  # what the real init gives: a new, empty catalog
    res = pp.run_backup(cat, params(fresh=True, backup_mode='full'), False, now=fake.now + 30)
    assert res['fresh_removed'] and res['made_catalog_dir'] and res['changed']
    assert res['mode'] == 'FULL' and res['reason'] == 'fresh: a new catalog, so backup_mode is full'
    # The old catalog went: no show of it, a new init and instance.
    assert commands(cat)[:3] == ['init', 'add-instance', 'backup']
    assert not os.path.exists(os.path.join(cat.host_catalog, 'backups', 'alation', 'OLD'))
    assert mode_of(cat.host_catalog) == 0o700


def test_fresh_in_check_mode_removes_nothing_and_foresees_a_full(catalog):
    cat, fake = catalog
    res = pp.run_backup(cat, params(fresh=True), True, now=fake.now + 30)
    assert res['fresh_removed'] and res['changed'] and res['mode'] == 'FULL' and res['pruned'] == []
    assert res['reason'] == 'fresh: a new catalog, so the catalog has no backup yet'
    assert commands(cat) == [] and os.path.isdir(os.path.join(cat.host_catalog, 'backups'))


def test_fresh_refuses_a_dir_that_is_no_catalog(tmp_path):
    d = tmp_path / 'backup' / 'pgbackup'
    d.mkdir(parents=True)
    (d / 'precious').write_text('x')
    cat = pp.Catalog(runner({'pg_probackup': FakeProbackup()}), '/usr/bin/pg_probackup', str(d), 'alation')
    with pytest.raises(pp.PgProbackupError) as e:
        pp.run_backup(cat, params(fresh=True), False)
    assert 'is not a pg_probackup catalog' in e.value.msg and (d / 'precious').exists()


def test_fresh_refuses_a_catalog_a_backup_runs_in(catalog, fake_pg_probackup):
    cat, dummy = catalog
    bdir = os.path.join(cat.host_catalog, 'backups', 'alation', 'TP5HJN')
    os.makedirs(bdir)
    with open(os.path.join(bdir, 'backup.pid'), 'w') as f:
        f.write('%d\n' % fake_pg_probackup.pid)
    with pytest.raises(pp.PgProbackupError) as e:
        pp.run_backup(cat, params(fresh=True), False)
    assert 'a backup is running in it' in e.value.msg and os.path.isdir(bdir)


def test_fresh_needs_pgdata_before_removing_anything(catalog):
    cat, dummy = catalog
    with pytest.raises(pp.PgProbackupError) as e:
        pp.run_backup(cat, params(fresh=True, pgdata=None), False)
    assert 'pgdata is required with fresh=true' in e.value.msg and 'nothing was removed' in e.value.msg
    assert os.path.isdir(os.path.join(cat.host_catalog, 'backups'))


def test_fresh_stops_at_a_lost_lease(catalog):
    cat, dummy = catalog

    def lost():
        raise _locks.LeaseLost('/data2/backup/.alation_backup.lock', None)

    cat.lease_check = lost
    with pytest.raises(pp.LeaseStop):
        pp.run_backup(cat, params(fresh=True), False)
    assert os.path.isdir(os.path.join(cat.host_catalog, 'backups'))


def test_a_missing_catalog_dir_is_made_private(tmp_path):
    fake = InitProbackup()
    cat = pp.Catalog(runner({'pg_probackup': fake}), '/usr/bin/pg_probackup', str(tmp_path / 'backup' / 'pgbackup'),
                     'alation')
    os.mkdir(str(tmp_path / 'backup'))
    res = pp.run_backup(cat, params(), False, now=T0 + 30)
    assert res['made_catalog_dir'] and mode_of(cat.host_catalog) == 0o700
    assert res['mode'] == 'FULL'


def test_the_catalog_dir_is_made_under_the_staging_rules():
    cat = pp.Catalog(runner({'pg_probackup': FakeProbackup()}), '/usr/bin/pg_probackup', '/etc/pgbackup', 'alation')
    with pytest.raises(pp.PgProbackupError) as e:
        cat.make_dir()
    assert 'not making catalog /etc/pgbackup' in e.value.msg and 'directly inside the system directory /etc' in e.value.msg


# -- the table counts right after the backup -------------------------------------------------------

def psql_double(fail_list=False, fail_db=None):
    def answer(argv):
        sql = argv[-1]
        db = argv[argv.index('-d') + 1]
        if 'json_agg' in sql:
            return (2, '', 'psql: error: connection refused\n') if fail_list else (0, json.dumps(['alation', 'other']), '')
        if 'server_version_num' in sql:
            return 0, '150020\n', ''
        if fail_db and fail_db in db:
            return 2, '', 'FATAL:  permission denied for database "%s"\n' % fail_db
        return 0, '7\n' if 'alation' in db else '0\n', ''
    return answer


def test_count_tables(tmp_path):
    from .runner_double import program
    bindir = str(tmp_path / 'bin')
    program(bindir, 'psql')
    dbs, error = _pg_inventory.count_tables(runner({'psql': psql_double()}), ['-h', 'db'], {}, 'postgres', bindir)
    assert dbs == {'alation': {'tables': 7}, 'other': {'tables': 0}} and error == ''
    dbs, error = _pg_inventory.count_tables(runner({'psql': psql_double(fail_db='other')}), [], {}, 'postgres', bindir)
    assert dbs == {'alation': {'tables': 7}}
    assert error.startswith('database other was not counted: ') and 'permission denied' in error


def test_count_tables_never_raises(tmp_path):
    from .runner_double import program
    bindir = str(tmp_path / 'bin')
    program(bindir, 'psql')
    dbs, error = _pg_inventory.count_tables(runner({'psql': psql_double(fail_list=True)}), [], {}, 'postgres', bindir)
    assert dbs == {} and error.startswith('cannot list the databases: ') and 'connection refused' in error
    dbs, error = _pg_inventory.count_tables(runner({}), [], {}, 'postgres', str(tmp_path / 'none'))
    assert dbs == {} and 'psql' in error and 'not' in error
