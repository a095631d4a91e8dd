# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A run that lost its lease stops before its next destructive act, changing nothing more (issue 18)."""

import os

import pytest

from ansible_collections.alation.backup.plugins.module_utils import _archive as A
from ansible_collections.alation.backup.plugins.module_utils import _locks
from ansible_collections.alation.backup.plugins.module_utils import _offsite
from ansible_collections.alation.backup.plugins.module_utils import _pg_probackup as pp
from ansible_collections.alation.backup.plugins.module_utils import _retention, _staging

from .test_archive import params as archive_params
from .runner_double import runner
from .test_offsite import FarSide, copier, far_archives, far_files, publish
from .test_pg_probackup_chain import DAY, T0, FakeProbackup, chain, deletes, params


@pytest.fixture
def local(tmp_path):
    """This host's new archive (as in test_offsite)."""
    d = tmp_path / 'local'
    d.mkdir()
    return publish(d, '202611300102', os.urandom(4096))


@pytest.fixture
def catalog(tmp_path):
    """A pg_probackup catalog answered by a double (as in test_pg_probackup_chain)."""
    for sub in ('backups/alation', 'wal/alation'):
        (tmp_path / 'pgbackup' / sub).mkdir(parents=True)
    fake = FakeProbackup()
    cat = pp.Catalog(runner({'pg_probackup': fake}), '/usr/bin/pg_probackup', str(tmp_path / 'pgbackup'), 'alation')
    return cat, fake


@pytest.fixture
def lease(tmp_path):
    """A run's lease, and a function that makes another run take it over (as a run that lost it sees it)."""
    path = str(tmp_path / '.alation_backup.lock')
    record, dummy = _locks.acquire_lease(path, 'alice', 'run-1', 600)
    beat = _locks.Heartbeat(dict(path=path, token=record['token']), interval=3600).start()

    def take_over():
        os.unlink(path)
        _locks.acquire_lease(path, 'bob', 'run-2', 600)
    yield beat, take_over
    beat.stop()


def snapshot(root):
    return sorted(os.path.join(d, n) for d, dirs, files in os.walk(str(root)) for n in dirs + files)


def staging(tmp_path):
    d = tmp_path / 'tmp'
    for name in ('a', 'b', 'c'):
        (d / name / 'deep').mkdir(parents=True)
        (d / name / 'deep' / 'file').write_text(name)
        (d / ('%s.txt' % name)).write_text(name)
    return d


def test_staging_clear_stops_before_removing_anything_once_the_lease_is_lost(tmp_path, lease):
    beat, take_over = lease
    d = staging(tmp_path)
    before = snapshot(d)
    take_over()
    with pytest.raises(_locks.LeaseLost) as e:
        _staging.clear_tree(str(d), check=beat.check)
    assert snapshot(d) == before and e.value.result.files == 0


def test_staging_clear_stops_between_top_level_entries(tmp_path, lease):
    beat, take_over = lease
    d = staging(tmp_path)
    calls = []

    def check():
        calls.append(1)
        if len(calls) == 3:
            take_over()  # lost while the first top-level entry (a, and all below it) was being removed
        beat.check()
    with pytest.raises(_locks.LeaseLost) as e:
        _staging.clear_tree(str(d), check=check, check_every=0)
    assert sorted(os.listdir(str(d))) == ['a.txt', 'b', 'b.txt', 'c', 'c.txt'] and e.value.result.top_removed == ['a']


def test_staging_clear_in_check_mode_and_with_the_lease_never_stops(tmp_path, lease):
    beat, take_over = lease
    d = staging(tmp_path)
    assert _staging.clear_tree(str(d), check=beat.check).files == 6 and os.listdir(str(d)) == []
    take_over()
    d = staging(tmp_path)
    assert _staging.clear_tree(str(d), dry_run=True, check=beat.check).files == 6, 'a dry run removes nothing'


def test_retention_stops_before_each_removal_once_the_lease_is_lost(tmp_path, lease):
    beat, take_over = lease
    d = tmp_path / 'backup'
    d.mkdir()
    for day in range(1, 6):
        publish(d, '2026110%d0102' % day)
    planned = _retention.plan(str(d), dict(keep_count=2), now=T0)
    assert len(planned['remove']) == 6
    before = snapshot(d)
    take_over()
    with pytest.raises(_locks.LeaseLost):
        _retention.apply(planned, check=beat.check)
    assert snapshot(d) == before


def test_retention_stops_halfway_when_the_lease_is_lost_halfway(tmp_path, lease):
    beat, take_over = lease
    d = tmp_path / 'backup'
    d.mkdir()
    for day in range(1, 6):
        publish(d, '2026110%d0102' % day)
    planned = _retention.plan(str(d), dict(keep_count=2), now=T0)
    calls = []

    def check():
        calls.append(1)
        if len(calls) == 3:
            take_over()
        beat.check()
    with pytest.raises(_locks.LeaseLost):
        _retention.apply(planned, check=check)
    gone = set(e['path'] for e in planned['remove'][:2])
    assert all(not os.path.exists(p) for p in gone) and all(os.path.exists(e['path']) for e in planned['remove'][2:])


def test_the_chain_prune_deletes_nothing_once_the_lease_is_lost(catalog, lease):
    beat, take_over = lease
    cat, fake = catalog
    fake.backups = chain(3)
    fake.now = T0 + DAY
    real_validate = fake.__call__

    def lose_during_the_backup(argv):
        if argv[1] == 'validate':
            take_over()
        return real_validate(argv)
    cat.runner.module.programs['pg_probackup'] = lose_during_the_backup
    cat.lease_check = beat.check
    with pytest.raises(pp.LeaseStop) as e:
        pp.run_backup(cat, params(), False, now=T0 + DAY)
    assert 'no longer holds the host lock' in e.value.msg and 'Stopped before pruning the older chain' in e.value.msg
    assert deletes(cat) == [] and len(fake.backups) == 4, 'the older chain is all there'


def test_absent_removes_no_catalog_once_the_lease_is_lost(catalog, lease):
    beat, take_over = lease
    cat, fake = catalog
    cat.lease_check = beat.check
    before = snapshot(cat.host_catalog)
    take_over()
    with pytest.raises(pp.LeaseStop, match='Stopped before removing catalog'):
        pp.run_absent(cat, False)
    assert os.path.isdir(cat.host_catalog) and snapshot(cat.host_catalog) == before


def test_an_archive_is_not_published_once_the_lease_is_lost(tree, lease):
    beat, take_over = lease
    src, dest = tree
    plan = A.Plan(archive_params(src, dest))

    def check():
        take_over()
        beat.check()
    with pytest.raises(_locks.LeaseLost):
        A.create_archive(plan, lease_check=check)
    assert os.listdir(dest) == [], 'no final name, no temporary file'


def test_the_far_side_renames_and_removes_nothing_once_the_lease_is_lost(tmp_path, local, lease):
    beat, take_over = lease
    older = far_archives(tmp_path, range(24, 30))
    before = far_files(tmp_path)
    c = copier(tmp_path, FarSide())
    c.lease_check = beat.check
    take_over()
    with pytest.raises(_locks.LeaseLost):
        _offsite.run_copy(c, str(local), dict(keep_count=3))
    assert far_files(tmp_path) == before, 'the copy under temporary names was removed, nothing renamed'
    assert len(older) == 6


def test_far_side_retention_removes_nothing_once_the_lease_is_lost(tmp_path, local, lease):
    beat, take_over = lease
    far_archives(tmp_path, range(24, 30))
    c = copier(tmp_path, FarSide())
    c.lease_check = beat.check
    real = c.apply_retention

    def lose_then_apply(planned):
        take_over()
        return real(planned)
    c.apply_retention = lose_then_apply
    with pytest.raises(_locks.LeaseLost):
        _offsite.run_copy(c, str(local), dict(keep_count=3))
    names = far_files(tmp_path)
    assert local.name in names and len([n for n in names if n.endswith('.tar.gz')]) == 7, 'copied, nothing pruned'
