# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

import json
import os
import subprocess
import threading
import time

import pytest

from ansible_collections.alation.backup.plugins.module_utils import _locks, _watch


class Clock(object):
    """A monotonic clock the test moves."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def mark(tmp_path):
    return str(tmp_path / '.alation_backup.lock.poll')


def test_a_mark_that_stops_changing_fires_once_after_the_timeout(mark):
    clock, fired = Clock(), []
    watch = ControllerWatchFor(mark, clock, fired)
    _watch.touch_mark(mark)
    assert watch.check() is False
    clock.now += 29.9
    assert watch.check() is False and fired == []
    clock.now += 0.2
    before = time.time()
    assert watch.check() is True
    assert len(fired) == 1
    # The wall time of the last poll seen: 30 s before now.
    assert before - 31 < fired[0] < before - 29
    clock.now += 100
    assert watch.check() is False and len(fired) == 1


def test_a_changing_mark_never_fires(mark):
    clock, fired = Clock(), []
    watch = ControllerWatchFor(mark, clock, fired)
    _watch.touch_mark(mark)
    watch.check()
    for dummy in range(20):
        clock.now += 20
        _watch.touch_mark(mark)
        assert watch.check() is False
    assert fired == []


def test_a_missing_mark_counts_as_silence(mark):
    clock, fired = Clock(), []
    watch = ControllerWatchFor(mark, clock, fired)
    watch.check()
    clock.now += 31
    assert watch.check() is True


def test_the_wall_clock_jumping_does_not_fire(mark, monkeypatch):
    clock, fired = Clock(), []
    watch = ControllerWatchFor(mark, clock, fired)
    _watch.touch_mark(mark)
    watch.check()
    monkeypatch.setattr(time, 'time', lambda: 4e9)  # a day ahead and more: the monotonic clock did not move
    assert watch.check() is False and fired == []


def ControllerWatchFor(mark, clock, fired):  # pylint: disable=invalid-name
    return _watch.ControllerWatch(mark, 30, fired.append, clock=clock)


def test_start_creates_the_mark_and_stop_removes_it(mark):
    watch = _watch.ControllerWatch(mark, 30, lambda t: None).start()
    assert os.path.isfile(mark)
    watch.stop()
    assert not os.path.exists(mark)


def _tree():
    proc = subprocess.Popen(['sh', '-c', 'sleep 100 & sleep 100 & wait'])
    deadline = time.monotonic() + 10
    while len(_watch.descendants(proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    return proc


def test_kill_tree_stops_a_shell_and_its_children():
    proc = _tree()
    children = _watch.descendants(proc.pid)
    assert len(children) == 2
    killed = _watch.kill_tree(proc.pid, include_root=True, grace=5)
    assert proc.wait(timeout=10) is not None
    assert set(children) | {proc.pid} <= set(killed)
    for pid, started in children.items():
        assert not _watch._alive(pid, started)


def test_kill_tree_reaches_grandchildren_whose_parent_dies_first():
    # The shell ignores nothing; its sleeps are orphaned when it dies and must be found all the same.
    proc = _tree()
    children = _watch.descendants(proc.pid)
    _watch.kill_tree(proc.pid, include_root=True, grace=0.5)
    proc.wait(timeout=10)
    time.sleep(0.2)
    assert not any(_watch._alive(pid, started) for pid, started in children.items())


def test_kill_tree_sends_sigkill_to_what_ignores_sigterm():
    proc = subprocess.Popen(['sh', '-c', "trap '' TERM; sleep 100 & wait; sleep 100"])
    time.sleep(0.3)
    started = time.monotonic()
    _watch.kill_tree(proc.pid, include_root=True, grace=1)
    assert proc.wait(timeout=10) == -9
    assert time.monotonic() - started < 5


def test_the_state_file_says_cancelled_with_the_last_poll_and_is_reported_once(tmp_path):
    d = str(tmp_path)
    record = _watch.write_state(d, _watch.cancel_record('database', last_poll=1700000000.0, pids=[12, 13],
                                                        now=1700000180.0))
    assert record['message'].startswith('cancelled: the controller stopped polling at 2023-11-14T22:13:20Z')
    assert _watch.read_state(d) == json.loads(json.dumps(record))
    assert oct(os.stat(_watch.state_path(d)).st_mode & 0o777) == '0o644'
    assert _watch.take_unreported(d)['message'] == record['message']
    assert _watch.take_unreported(d) is None
    assert _watch.read_state(d)['stopped_ts'] == 1700000180.0, 'kept for the metrics'


def test_no_state_nothing_to_report(tmp_path):
    assert _watch.take_unreported(str(tmp_path)) is None


def test_a_silent_controller_stops_the_programs_releases_the_lease_and_says_cancelled(tmp_path, monkeypatch):
    lease_path = str(tmp_path / '.alation_backup.lock')
    record, dummy = _locks.acquire_lease(lease_path, 'admin', 'run-1', 60)
    lease = dict(path=lease_path, token=record['token'])
    mark = lease_path + '.poll'
    cleaned = []
    guard = _watch.Guard(lease, 'database', mark=mark, timeout=1, cleanup=lambda: cleaned.append(True))
    guard.watch.interval = 0.1
    guard.start()
    # The module's program: a tree under this process, which the watch must stop.
    proc = subprocess.Popen(['sh', '-c', 'sleep 100 & sleep 100 & wait'])
    children = dict(_watch.descendants(proc.pid))
    proc.wait(timeout=30)  # returns once the watch killed it, as run_command would
    message = guard.stop()
    assert message.startswith('cancelled: the controller stopped polling at ')
    assert 'the database step stopped' in message
    assert not os.path.exists(lease_path)
    assert not os.path.exists(mark)
    assert cleaned == [True]
    state = _watch.read_state(str(tmp_path))
    assert state['result'] == 'cancelled' and state['step'] == 'database'
    assert proc.pid in state['stopped_pids']
    assert not any(_watch._alive(pid, started) for pid, started in children.items())


def test_a_polled_guard_renews_and_stops_as_the_heartbeat_did(tmp_path):
    lease_path = str(tmp_path / '.alation_backup.lock')
    record, dummy = _locks.acquire_lease(lease_path, 'admin', 'run-1', 60)
    mark = lease_path + '.poll'
    guard = _watch.Guard(dict(path=lease_path, token=record['token']), 'archive', mark=mark, timeout=1)
    guard.watch.interval = 0.05
    guard.start()
    stop = threading.Event()

    def poll():
        while not stop.wait(0.2):
            _watch.touch_mark(mark)

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(2)
    stop.set()
    poller.join()
    assert guard.stop() is None
    assert os.path.exists(lease_path)
    assert _watch.read_state(str(tmp_path)) is None


def test_without_a_mark_the_guard_is_the_heartbeat(tmp_path):
    guard = _watch.Guard(None, 'database', mark=None, timeout=180).start()
    assert guard.watch is None
    assert guard.stop() is None
