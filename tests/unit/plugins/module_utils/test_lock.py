# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""module_utils/_locks.py (FileLock): real processes contend for a real flock."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from ansible_collections.alation.backup.plugins.module_utils._locks import FileLock, LockBusy, read_holder

COLLECTIONS = os.path.join(os.path.dirname(__file__), *(['..'] * 4), '.build', 'collections')

HOLDER = r'''
import sys, time
from ansible_collections.alation.backup.plugins.module_utils._locks import FileLock
with FileLock(sys.argv[1], purpose='holder test'):
    print('locked', flush=True)
    time.sleep(float(sys.argv[2]))
'''


@pytest.fixture
def holder(tmp_path):
    """Start a process that holds the lock for N seconds; yields (start(seconds), path)."""
    path = str(tmp_path / '.catalog.lock')
    procs = []

    def start(seconds=30):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.abspath(COLLECTIONS)] + sys.path))
        proc = subprocess.Popen([sys.executable, '-c', HOLDER, path, str(seconds)], stdout=subprocess.PIPE,
                                universal_newlines=True, env=env)
        procs.append(proc)
        assert proc.stdout.readline().strip() == 'locked'
        return proc

    yield start, path
    for proc in procs:
        proc.kill()
        proc.wait()


def test_busy_lock_fails_at_once_naming_the_holder(holder):
    start, path = holder
    proc = start()
    t0 = time.monotonic()
    with pytest.raises(LockBusy) as e:
        FileLock(path, timeout=0).acquire()
    assert time.monotonic() - t0 < 0.5
    assert e.value.holder_pid == proc.pid
    assert e.value.holder_purpose == 'holder test'
    assert 'pid %d' % proc.pid in str(e.value)


def test_busy_lock_waits_up_to_timeout(holder):
    start, path = holder
    start()
    t0 = time.monotonic()
    with pytest.raises(LockBusy) as e:
        FileLock(path, timeout=0.6, poll_interval=0.05).acquire()
    assert 0.6 <= time.monotonic() - t0 < 1.5
    assert e.value.waited >= 0.5


def test_waiter_gets_the_lock_when_the_holder_ends(holder):
    start, path = holder
    start(seconds=0.5)
    with FileLock(path, timeout=10, poll_interval=0.05, purpose='second') as lock:
        assert lock.locked
        assert read_holder(path) == dict(pid=os.getpid(), purpose='second')


def test_killed_holder_leaves_no_stale_lock(holder):
    start, path = holder
    proc = start()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # The file still names the dead holder, but the kernel dropped its flock.
    assert read_holder(path)['pid'] == proc.pid
    with FileLock(path, timeout=0):
        assert read_holder(path)['pid'] == os.getpid()


def test_two_fds_in_one_process_contend(tmp_path):
    path = str(tmp_path / 'x.lock')
    with FileLock(path, purpose='first'):
        with pytest.raises(LockBusy) as e:
            FileLock(path).acquire()
        assert e.value.holder_pid == os.getpid()
    # Released: the file is removed, nothing is left behind.
    assert not os.path.exists(path)
    with FileLock(path):
        pass
    assert os.listdir(str(tmp_path)) == []


def test_a_waiter_on_a_removed_lock_file_starts_again_on_the_path(tmp_path):
    path = str(tmp_path / 'x.lock')
    first = FileLock(path).acquire()
    second = FileLock(path, timeout=10, poll_interval=0.05)
    waiter = threading.Thread(target=second.acquire)
    waiter.start()
    time.sleep(0.3)  # the waiter has opened the file and polls its lock
    first.release()  # removes the file the waiter opened
    waiter.join()
    # The waiter did not settle for the removed inode: it holds the file now at the path.
    assert second.locked and second._is_current(second.fd)
    with pytest.raises(LockBusy):
        FileLock(path).acquire()
    second.release()
    assert os.listdir(str(tmp_path)) == []


def test_children_do_not_inherit_the_lock(tmp_path):
    path = str(tmp_path / 'x.lock')
    lock = FileLock(path).acquire()
    child = subprocess.Popen(['sleep', '30'])
    try:
        lock.release()
        with FileLock(path, timeout=0):
            pass
    finally:
        child.kill()
        child.wait()


def test_symlink_in_place_of_the_lock_file_is_refused(tmp_path):
    target = tmp_path / 'target'
    target.write_text('keep')
    (tmp_path / 'x.lock').symlink_to(str(target))
    with pytest.raises(OSError):
        FileLock(str(tmp_path / 'x.lock')).acquire()
    assert target.read_text() == 'keep'


@pytest.mark.parametrize('content, expected', [
    ('{"pid": 123, "purpose": "backup"}', dict(pid=123, purpose='backup')),
    ('{"pid": 123}', dict(pid=123)),
    ('', None),
    ('garbage\n', None),
    ('[1, 2]', None),
])
def test_read_holder(tmp_path, content, expected):
    path = tmp_path / 'l'
    path.write_text(content)
    assert read_holder(str(path)) == expected
    assert read_holder(str(tmp_path / 'missing')) is None
