# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

import json
import multiprocessing
import os
import time

import pytest

from ansible_collections.alation.backup.plugins.module_utils import _locks


@pytest.fixture
def lock_path(tmp_path):
    return str(tmp_path / '.alation_backup.lock')


def test_acquire_writes_a_private_lease_and_release_removes_it(lock_path):
    record, taken_over = _locks.acquire_lease(lock_path, 'admin', 'run-1', 60)
    assert taken_over is None
    assert oct(os.stat(lock_path).st_mode & 0o777) == '0o600'
    with open(lock_path) as f:
        assert json.load(f)['run_id'] == 'run-1'
    assert _locks.release_lease(lock_path, record['token']) is True
    assert not os.path.exists(lock_path)


def test_a_second_run_is_refused_and_told_who_holds_it(lock_path):
    _locks.acquire_lease(lock_path, 'alice via ansible-playbook', 'run-1', 600)
    with pytest.raises(_locks.LockHeld) as e:
        _locks.acquire_lease(lock_path, 'bob', 'run-2', 600)
    assert 'alice via ansible-playbook' in str(e.value) and 'run-1' in str(e.value)


def test_the_same_run_gets_its_own_lease_back(lock_path):
    first, dummy = _locks.acquire_lease(lock_path, 'admin', 'run-1', 60)
    again, dummy = _locks.acquire_lease(lock_path, 'admin', 'run-1', 60)
    assert again['token'] == first['token']


def test_release_with_another_token_leaves_the_lease(lock_path):
    _locks.acquire_lease(lock_path, 'admin', 'run-1', 60)
    assert _locks.release_lease(lock_path, 'not-the-token') is False
    assert os.path.exists(lock_path)


def test_release_of_a_missing_lease_is_a_no_op(lock_path):
    assert _locks.release_lease(lock_path, 'whatever') is False


@pytest.mark.parametrize('holder, stale', [
    (None, 'the lock file is unreadable'),
    ({'expires': 0}, 'it expired'),
    ({'expires': time.time() + 600, 'boot_id': 'another-boot'}, 'the host rebooted since it was taken'),
    ({'expires': time.time() + 600, 'boot_id': _locks.boot_id()}, None),
])
def test_stale_reason(holder, stale):
    assert _locks.stale_reason(holder) == stale


def test_an_expired_lease_is_taken_over(lock_path):
    _locks.acquire_lease(lock_path, 'gone', 'run-1', -1)
    record, taken_over = _locks.acquire_lease(lock_path, 'admin', 'run-2', 60)
    assert taken_over == 'it expired'
    assert record['run_id'] == 'run-2'


def test_a_garbage_lock_file_is_taken_over(lock_path):
    with open(lock_path, 'w') as f:
        f.write('not json')
    dummy, taken_over = _locks.acquire_lease(lock_path, 'admin', 'run-2', 60)
    assert taken_over == 'the lock file is unreadable'


def _try(path, run_id, queue):
    try:
        _locks.acquire_lease(path, run_id, run_id, 600)
        queue.put('won')
    except _locks.LockHeld:
        queue.put('refused')


def test_racing_runs_over_a_stale_lease_leave_exactly_one_winner(lock_path):
    _locks.acquire_lease(lock_path, 'gone', 'run-0', -1)
    queue = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_try, args=(lock_path, 'run-%d' % i, queue)) for i in range(1, 9)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    outcomes = sorted(queue.get() for dummy in procs)
    assert outcomes.count('won') == 1 and outcomes.count('refused') == 7


def test_a_symlink_in_place_of_the_lock_is_not_followed(tmp_path, lock_path):
    target = tmp_path / 'elsewhere'
    target.write_text('{"expires": 0}')
    os.symlink(str(target), lock_path)
    # The stale link is removed and O_EXCL|O_NOFOLLOW makes a fresh file: the
    # link's target is never written through.
    _locks.acquire_lease(lock_path, 'admin', 'run-1', 60)
    assert target.read_text() == '{"expires": 0}'
    assert not os.path.islink(lock_path)


def test_a_lease_leaves_nothing_behind_once_released(tmp_path):
    path = str(tmp_path / '.alation_backup.lock')
    record, dummy = _locks.acquire_lease(path, 'admin', 'run-1', 60)
    assert os.listdir(str(tmp_path)) == ['.alation_backup.lock']
    assert _locks.release_lease(path, record['token']) is True
    assert os.listdir(str(tmp_path)) == [], 'no .guard file or any other is left'
