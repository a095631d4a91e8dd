# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

import json
import multiprocessing
import os
import subprocess
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


def test_the_same_run_gets_its_own_lease_back_renewed(lock_path):
    first, dummy = _locks.acquire_lease(lock_path, 'admin', 'run-1', 60)
    time.sleep(0.05)
    again, dummy = _locks.acquire_lease(lock_path, 'admin', 'run-1', 60)
    assert again['token'] == first['token'] and again['renewed'] > first['renewed']


def test_release_with_another_token_leaves_the_lease(lock_path):
    _locks.acquire_lease(lock_path, 'admin', 'run-1', 60)
    assert _locks.release_lease(lock_path, 'not-the-token') is False
    assert os.path.exists(lock_path)


def test_release_of_a_missing_lease_is_a_no_op(lock_path):
    assert _locks.release_lease(lock_path, 'whatever') is False


NOW = time.time()


@pytest.mark.parametrize('holder, stale', [
    (None, 'the lock file is unreadable'),
    ({'renewed': NOW - 601, 'stale_after': 600}, 'not renewed for 601s (stale after 600s): that run is gone'),
    ({'renewed': NOW - 599, 'stale_after': 600}, None),
    # The holder's own promise counts, not the newcomer's.
    ({'renewed': NOW - 100, 'stale_after': 60}, 'not renewed for 100s (stale after 60s): that run is gone'),
    ({'renewed': NOW, 'stale_after': 600, 'boot_id': 'another-boot'}, 'the host rebooted since it was taken'),
    ({'renewed': NOW, 'stale_after': 600, 'boot_id': _locks.boot_id()}, None),
    # A lease written before the heartbeat (no renewed, no stale_after): its start and our limit count.
    ({'started': NOW - 700, 'expires': NOW + 20000}, 'not renewed for 700s (stale after 600s): that run is gone'),
])
def test_stale_reason(holder, stale):
    assert _locks.stale_reason(holder, 600, now=NOW) == stale


def test_a_killed_run_is_taken_over_once_stale_and_named(lock_path):
    _locks.acquire_lease(lock_path, 'alice via ansible-playbook', 'run-1', 0.2)
    with pytest.raises(_locks.LockHeld):
        _locks.acquire_lease(lock_path, 'bob', 'run-2', 0.2)
    time.sleep(0.3)  # run-1 was killed: nobody renews its lease
    record, taken_over = _locks.acquire_lease(lock_path, 'bob', 'run-2', 600)
    assert record['run_id'] == 'run-2'
    assert taken_over['holder']['run_id'] == 'run-1' and taken_over['holder']['owner'] == 'alice via ansible-playbook'
    assert 'token' not in taken_over['holder']
    assert taken_over['reason'].startswith('not renewed for 0s (stale after 0.2s)')


def test_a_live_run_is_never_taken_over(lock_path):
    record, dummy = _locks.acquire_lease(lock_path, 'alice', 'run-1', 0.3)
    lease = dict(path=lock_path, token=record['token'])
    with _locks.Heartbeat(lease) as beat:  # interval: stale_after / 4
        assert beat.interval == 1.0, 'never beats faster than once a second'
    with _locks.Heartbeat(lease, interval=0.05):
        for dummy in range(10):
            time.sleep(0.1)
            with pytest.raises(_locks.LockHeld) as e:
                _locks.acquire_lease(lock_path, 'bob', 'run-2', 0.3)
            assert 'run run-1 of alice' in str(e.value)


def test_the_heartbeat_interval_follows_stale_after(lock_path):
    for stale_after, interval in ((600, 30), (60, 15), (8, 2)):
        record, dummy = _locks.acquire_lease(lock_path, 'alice', 'run-%d' % stale_after, stale_after)
        with _locks.Heartbeat(dict(path=lock_path, token=record['token'])) as beat:
            assert beat.interval == interval
        _locks.release_lease(lock_path, record['token'])


def test_a_heartbeat_that_finds_its_lease_taken_says_so_and_writes_nothing(lock_path):
    record, dummy = _locks.acquire_lease(lock_path, 'alice', 'run-1', 600)
    with _locks.Heartbeat(dict(path=lock_path, token=record['token']), interval=0.05) as beat:
        os.unlink(lock_path)
        other, dummy = _locks.acquire_lease(lock_path, 'bob', 'run-2', 600)
        time.sleep(0.2)
    assert isinstance(beat.lost, _locks.LeaseLost) and 'run run-2 of bob' in str(beat.lost)
    assert _locks.read_holder(lock_path)['token'] == other['token'], "bob's lease is left as it was"


def test_no_lease_no_heartbeat():
    with _locks.Heartbeat(None) as beat:
        pass
    assert beat.lost is None


def test_renew_without_the_lease_is_lost(lock_path):
    with pytest.raises(_locks.LeaseLost):
        _locks.renew_lease(lock_path, 'token')


def test_a_renewal_cut_short_leaves_nothing_once_released(lock_path, tmp_path):
    record, dummy = _locks.acquire_lease(lock_path, 'admin', 'run-1', 60)
    dead = subprocess.Popen(['true'])
    dead.wait()
    (tmp_path / ('.alation_backup.lock.%d.tmp' % dead.pid)).write_text('{}')  # killed mid-renewal
    (tmp_path / '.alation_backup.lock.1.tmp').write_text('{}')  # pid 1 lives: not ours to judge
    assert _locks.release_lease(lock_path, record['token'])
    assert sorted(os.listdir(str(tmp_path))) == ['.alation_backup.lock.1.tmp']


def test_a_garbage_lock_file_is_taken_over(lock_path):
    with open(lock_path, 'w') as f:
        f.write('not json')
    dummy, taken_over = _locks.acquire_lease(lock_path, 'admin', 'run-2', 60)
    assert taken_over == dict(holder={}, reason='the lock file is unreadable')


def _try(path, run_id, queue):
    try:
        _locks.acquire_lease(path, run_id, run_id, 600)
        queue.put('won')
    except _locks.LockHeld:
        queue.put('refused')


def test_racing_runs_over_a_stale_lease_leave_exactly_one_winner(lock_path):
    _locks.acquire_lease(lock_path, 'gone', 'run-0', -1)  # never renewed: stale at once
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


def test_stop_returns_the_lost_lease_message(lock_path):
    record, dummy = _locks.acquire_lease(lock_path, 'alice', 'run-1', 600)
    beat = _locks.Heartbeat(dict(path=lock_path, token=record['token']), interval=0.05).start()
    assert beat.stop() is None
    _locks.release_lease(lock_path, record['token'])
    beat = _locks.Heartbeat(dict(path=lock_path, token=record['token']), interval=0.05).start()
    assert 'no longer holds the host lock' in beat.stop()


class _Module(object):
    def __init__(self, check_mode, lease):
        self.check_mode, self.params = check_mode, dict(lease=lease)


def test_heartbeat_of_a_module_beats_only_outside_check_mode(lock_path):
    record, dummy = _locks.acquire_lease(lock_path, 'alice', 'run-1', 600)
    lease = dict(path=lock_path, token=record['token'])
    assert _locks.heartbeat(_Module(True, lease)).lease is None
    beat = _locks.heartbeat(_Module(False, lease))
    assert beat.lease == lease and beat.stop() is None
