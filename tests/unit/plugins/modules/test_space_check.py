# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""space_check: a clear refusal, naming the numbers, when the backup storage dir is short of space."""

import os

from ansible_collections.alation.backup.plugins.module_utils import _alation
from ansible_collections.alation.backup.plugins.modules import space_check

from .utils import run_module


def test_enough_space_passes_with_the_figures(tmp_path):
    (tmp_path / 'pgdata').mkdir()
    (tmp_path / 'pgdata' / 'f').write_bytes(b'x' * 100)
    failed, result = run_module(space_check.main, dict(path=str(tmp_path), pgdata=str(tmp_path / 'pgdata')))
    assert not failed and result['changed'] is False
    assert result['needed'] == 200 and result['pgdata_bytes'] == 100


def test_short_of_space_names_the_dir_the_need_and_the_way_out(tmp_path, monkeypatch):
    (tmp_path / 'pgdata').mkdir()
    (tmp_path / 'pgdata' / 'f').write_bytes(b'x' * 100)
    monkeypatch.setattr(_alation, 'free_bytes', lambda path: 10)
    failed, result = run_module(space_check.main, dict(path=str(tmp_path), pgdata=str(tmp_path / 'pgdata'),
                                                       extra_paths=[str(tmp_path / 'pgdata')]))
    assert failed
    assert result['msg'].startswith('the backup storage dir %s has 10 B free' % tmp_path)
    assert 'alation_backup_space_check=false' in result['msg']


def test_what_retention_would_free_counts_and_is_said(tmp_path, monkeypatch):
    (tmp_path / 'pgdata').mkdir()
    (tmp_path / 'pgdata' / 'f').write_bytes(b'x' * 100)
    monkeypatch.setattr(_alation, 'free_bytes', lambda path: 150)
    args = dict(path=str(tmp_path), pgdata=str(tmp_path / 'pgdata'))
    failed, result = run_module(space_check.main, dict(args, reclaimable=60))
    assert not failed and result['needs_retention'] is True
    failed, result = run_module(space_check.main, dict(args, reclaimable=10))
    assert failed and 'has 150 B free and retention would free 10 B more' in result['msg']
    assert 'alation_backup_keep_count' in result['msg'] and result['needs_retention'] is False
    monkeypatch.setattr(_alation, 'free_bytes', lambda path: 1000)
    failed, result = run_module(space_check.main, dict(args, reclaimable=10))
    assert not failed and result['needs_retention'] is False


# -- retention inside the check (issue 19: one preflight task instead of three) ---------------------

def storage_with_archives(tmp_path):
    from ..module_utils.test_archive_names import publish
    storage = tmp_path / 'backup'
    storage.mkdir()
    paths = [publish(storage, '2024010%d0000_5-17-0-1_alation_backup.tar.gz' % day, data=b'x' * 40) for day in (1, 2, 3)]
    (tmp_path / 'pgdata').mkdir()
    (tmp_path / 'pgdata' / 'f').write_bytes(b'x' * 100)
    return storage, paths


def retention_args(tmp_path, storage, **more):
    return dict(dict(path=str(storage), pgdata=str(tmp_path / 'pgdata'), keep_count=2), **more)


def test_what_retention_would_free_is_counted_and_nothing_goes_when_there_is_room(tmp_path, monkeypatch):
    storage, paths = storage_with_archives(tmp_path)
    monkeypatch.setattr(_alation, 'free_bytes', lambda path: 1000)
    failed, result = run_module(space_check.main, retention_args(tmp_path, storage))
    assert not failed and not result['changed'] and not result['needs_retention']
    # keep_count 2 with room for this run's archive: the two oldest (and their .sha256) would go.
    sidecar = os.path.getsize(paths[0] + '.sha256')
    assert result['reclaimable'] == 2 * (40 + sidecar)
    assert result['removed'] == [] and result['freed_bytes'] == 0 and result['future_archives'] == []
    assert all(os.path.exists(p) for p in paths)


def test_retention_runs_when_the_space_needs_it(tmp_path, monkeypatch):
    storage, paths = storage_with_archives(tmp_path)
    monkeypatch.setattr(_alation, 'free_bytes', lambda path: 150)
    failed, result = run_module(space_check.main, retention_args(tmp_path, storage))
    assert not failed and result['changed'] and result['needs_retention']
    assert [r['path'] for r in result['removed']] == [paths[0], paths[0] + '.sha256', paths[1], paths[1] + '.sha256']
    assert result['freed_bytes'] == result['reclaimable']
    assert sorted(os.listdir(str(storage))) == sorted(os.path.basename(p) for p in (paths[2], paths[2] + '.sha256'))


def test_retention_in_check_mode_removes_nothing(tmp_path, monkeypatch):
    storage, paths = storage_with_archives(tmp_path)
    monkeypatch.setattr(_alation, 'free_bytes', lambda path: 150)
    failed, result = run_module(space_check.main, retention_args(tmp_path, storage, _ansible_check_mode=True))
    assert not failed and result['changed'] and len(result['removed']) == 4
    assert all(os.path.exists(p) for p in paths)


def test_still_short_after_retention_fails_removing_nothing(tmp_path, monkeypatch):
    storage, paths = storage_with_archives(tmp_path)
    (tmp_path / 'pgdata' / 'f').write_bytes(b'x' * 1000)
    monkeypatch.setattr(_alation, 'free_bytes', lambda path: 10)
    failed, result = run_module(space_check.main, retention_args(tmp_path, storage))
    assert failed and 'and retention would free' in result['msg'] and result['removed'] == []
    assert all(os.path.exists(p) for p in paths)


def test_retention_stops_at_a_lost_lease(tmp_path, monkeypatch):
    from ansible_collections.alation.backup.plugins.module_utils import _locks
    storage, paths = storage_with_archives(tmp_path)
    lock = str(storage / '.alation_backup.lock')
    _locks.acquire_lease(lock, 'another run', 'other', 600)
    monkeypatch.setattr(_alation, 'free_bytes', lambda path: 150)
    failed, result = run_module(space_check.main, retention_args(tmp_path, storage, lease=dict(path=lock, token='not-ours')))
    assert failed and 'removing anything more' in result['msg']
    assert all(os.path.exists(p) for p in paths)


def test_a_missing_storage_dir_plans_no_retention(tmp_path):
    (tmp_path / 'pgdata').mkdir()
    failed, result = run_module(space_check.main, dict(path=str(tmp_path / 'none'), pgdata=str(tmp_path / 'pgdata'),
                                                       keep_count=3))
    assert not failed and result['reclaimable'] == 0 and result['removed'] == []


def test_room_is_made_with_the_same_rules_tiers_and_pins(tmp_path, monkeypatch):
    storage, paths = storage_with_archives(tmp_path)
    monkeypatch.setattr(_alation, 'free_bytes', lambda path: 150)
    # Today's day goes to this run's archive; keep_daily 3 keeps Jan 3 (the newest, always kept) and Jan 2, and
    # Jan 1 is pinned by a .keep file: nothing can go, and the check fails, removing nothing.
    (storage / (os.path.basename(paths[0]) + '.keep')).write_text('')
    failed, result = run_module(space_check.main, retention_args(tmp_path, storage, keep_count=1, keep_daily=3))
    assert failed and result['removed'] == [] and all(os.path.exists(p) for p in paths)
    # keep_daily 2 (today, then Jan 3): Jan 2 goes; the pinned Jan 1 stays.
    failed, result = run_module(space_check.main, retention_args(tmp_path, storage, keep_count=1, keep_daily=2))
    assert not failed and [r['path'] for r in result['removed']] == [paths[1], paths[1] + '.sha256']
    assert os.path.exists(paths[0]) and os.path.exists(paths[2])


def test_tiers_with_keep_count_0_are_refused(tmp_path):
    (tmp_path / 'pgdata').mkdir()
    failed, result = run_module(space_check.main, dict(path=str(tmp_path), pgdata=str(tmp_path / 'pgdata'), keep_monthly=12))
    assert failed and 'keep_monthly=12: keep_count=0 turns retention off' in result['msg']
