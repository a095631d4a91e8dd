# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The modules that remove fail at once, removing nothing, when the run's lease is no longer theirs."""

import hashlib
import os

from ansible_collections.alation.backup.plugins.module_utils import _locks
from ansible_collections.alation.backup.plugins.module_utils._archive_names import archive_name, sidecar_text
from ansible_collections.alation.backup.plugins.modules import retention, staging_dir

from .utils import run_module


def lost_lease(tmp_path):
    """The lease option of a run whose lease another run took over."""
    path = str(tmp_path / '.alation_backup.lock')
    record, dummy = _locks.acquire_lease(path, 'alice', 'run-1', 600)
    os.unlink(path)
    _locks.acquire_lease(path, 'bob', 'run-2', 600)
    return dict(path=path, token=record['token'])


def tree(root):
    return sorted(os.path.join(d, n) for d, dirs, files in os.walk(str(root)) for n in dirs + files)


def test_staging_dir_empties_nothing_once_the_lease_is_lost(tmp_path):
    d = tmp_path / 'data2' / 'tmp'
    (d / 'sub').mkdir(parents=True)
    (d / 'sub' / 'file').write_text('the other run is packing this')
    before = tree(d)
    failed, result = run_module(staging_dir.main, dict(path=str(d), state='empty', lease=lost_lease(tmp_path)))
    assert failed and 'no longer holds the host lock' in result['msg'] and 'run run-2 of bob' in result['msg']
    assert 'Stopped before emptying the staging dir' in result['msg'] and not result['changed']
    assert tree(d) == before and result['removed_files'] == 0


def test_retention_removes_nothing_once_the_lease_is_lost(tmp_path):
    d = tmp_path / 'backup'
    d.mkdir()
    for day in range(1, 5):
        name = archive_name('2026110%d0102' % day, '5-17-0-116556')
        data = name.encode()
        (d / name).write_bytes(data)
        (d / (name + '.sha256')).write_text(sidecar_text(hashlib.sha256(data).hexdigest(), name, len(data)))
    before = tree(d)
    failed, result = run_module(retention.main, dict(dir=str(d), keep_count=1, lease=lost_lease(tmp_path)))
    assert failed and 'no longer holds the host lock' in result['msg'] and 'Stopped before removing' in result['msg']
    assert tree(d) == before
