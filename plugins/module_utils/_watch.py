# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A long step on the host that watches for its controller.

An AWX cancel, or a controller that dies, kills the controller only: a step
started with ``async`` runs on, its heartbeat keeps the lease, and the next
run waits. So the step watches a poll mark, a small file the controller's
wait_progress rewrites at every look at the job (through step_progress).
When the mark has not changed for ``controller_timeout`` seconds (measured
with ``time.monotonic``, never the wall clock), the step stops its programs
(the whole process tree under the module), lets the module fail the way a
failed step does (its own temporary files go), releases the lease, and writes
the cancel state file beside the lease, which the next run's record and the
metrics read.

``Guard`` is what a module uses: the lease's ``Heartbeat`` plus the
``ControllerWatch``, started and stopped together. Standard library only.
"""

import json
import os
import signal
import threading
import time

try:
    import _thread
except ImportError:  # pragma: no cover
    _thread = None

from ansible_collections.alation.backup.plugins.module_utils import _locks
from ansible_collections.alation.backup.plugins.module_utils._archive_names import host_label
from ansible_collections.alation.backup.plugins.module_utils._host import write_file

# The cancel state file, beside the lease in the backup storage dir: one file, one writer (write_state).
STATE_NAME = '.alation_backup.cancelled.json'
# After SIGTERM, the seconds a program gets before SIGKILL.
TERM_GRACE_S = 5
# After the programs are stopped, the seconds the module gets to fail its own way (removing its temporary
# files) before it is interrupted, and the seconds before the watch gives up waiting and ends the process.
MODULE_GRACE_S = 5
MODULE_DEADLINE_S = 60


def watch_argument_spec():
    """The options of the modules that run a long step in the background."""
    return dict(
        controller_mark=dict(type='path'),
        controller_timeout=dict(type='int', default=180),
    )


# -- process trees -----------------------------------------------------------------

def _proc_stat(pid, proc='/proc'):
    """(ppid, start time, state) of ``pid`` from /proc, or None when it is gone."""
    try:
        with open('%s/%d/stat' % (proc, pid)) as f:
            fields = f.read().rsplit(')', 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), int(fields[19]), fields[0]


def descendants(root, proc='/proc'):
    """``{pid: start time}`` of every live process under ``root`` (children, theirs ...), found by ppid."""
    children = {}
    for name in os.listdir(proc):
        if name.isdigit():
            found = _proc_stat(int(name), proc)
            if found and found[2] != 'Z':
                children.setdefault(found[0], []).append((int(name), found[1]))
    tree, todo = {}, [root]
    while todo:
        for pid, started in children.get(todo.pop(), ()):
            if pid not in tree:
                tree[pid] = started
                todo.append(pid)
    return tree


def _alive(pid, started, proc='/proc'):
    found = _proc_stat(pid, proc)
    return bool(found) and found[1] == started and found[2] != 'Z'


def _signal(pids, sig, proc='/proc'):
    for pid, started in pids.items():
        if _alive(pid, started, proc):  # the same process, not a reused pid
            try:
                os.kill(pid, sig)
            except OSError:
                pass


def kill_tree(root, include_root=False, grace=TERM_GRACE_S, sleep=time.sleep, proc='/proc'):
    """Stop every process under ``root`` (and ``root`` itself with ``include_root``): SIGTERM, then SIGKILL
    what is left after ``grace`` seconds. Return the pids signalled.

    The tree is collected before any signal: a child whose parent dies first is reparented to init and
    could no longer be found by its ppid. Processes started meanwhile are collected at each look.
    """
    tree = descendants(root, proc)
    if include_root:
        found = _proc_stat(root, proc)
        if found:
            tree[root] = found[1]
    _signal(tree, signal.SIGTERM, proc)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        newer = descendants(root, proc)
        _signal({p: s for p, s in newer.items() if p not in tree}, signal.SIGTERM, proc)
        tree.update(newer)
        if not any(_alive(p, s, proc) for p, s in tree.items()):
            break
        sleep(0.1)
    tree.update(descendants(root, proc))
    _signal(tree, signal.SIGKILL, proc)
    return sorted(tree)


# -- the cancel state file -----------------------------------------------------------

def state_path(directory):
    return os.path.join(directory, STATE_NAME)


def cancel_record(step, last_poll, pids=(), now=None):
    """What a step that stopped because its controller stopped polling records."""
    now = time.time() if now is None else now
    return dict(result='cancelled', step=step, host=host_label(), pid=os.getpid(),
                last_poll=_locks.utc_text(last_poll), last_poll_ts=round(last_poll, 3), stopped_ts=round(now, 3),
                stopped_pids=list(pids), reported=False,
                message='cancelled: the controller stopped polling at %s; the %s step stopped at %s'
                        % (_locks.utc_text(last_poll), step, _locks.utc_text(now)))


def write_state(directory, record):
    """The one writer of the cancel state file beside the lease (read by the next run and the metrics)."""
    write_file(state_path(directory), json.dumps(record, sort_keys=True), mode=0o644)
    return record


def take_unreported(directory):
    """The last cancel if no run reported it yet (then marked reported), else None: the next run's record tells
    it once; the metrics keep its time."""
    state = read_state(directory)
    if not state or state.get('reported', True):
        return None
    write_state(directory, dict(state, reported=True))
    return state


def read_state(directory):
    """The last cancel recorded in ``directory`` (a dict), or None."""
    return _locks.read_holder(state_path(directory))


# -- the watch ------------------------------------------------------------------------

def touch_mark(path):
    """What a controller's poll does: give the mark new content (the watch sees it change)."""
    write_file(path, '%r %d\n' % (time.time(), os.getpid()), mode=0o600)


def _signature(path):
    try:
        st = os.stat(path)
        with open(path, 'rb') as f:
            return (st.st_ino, st.st_mtime_ns, st.st_size, f.read(256))
    except OSError:
        return None


class ControllerWatch(object):
    """Calls ``on_silence(last_poll_wall_time)`` once when ``mark`` has not changed for ``timeout`` seconds.

    ``check()`` is one look (the thread calls it every ``interval`` seconds; the unit tests call it with a
    fake ``clock``). The mark is created at ``start()``, so the first poll's delay counts from the start.
    """

    def __init__(self, mark, timeout, on_silence, clock=time.monotonic, interval=1.0):
        self.mark = mark
        self.timeout = timeout
        self.on_silence = on_silence
        self.clock = clock
        self.interval = interval
        self.fired = False
        self._seen = None
        self._since = None
        self._stop = threading.Event()
        self._thread = None

    def check(self):
        now = self.clock()
        seen = _signature(self.mark)
        if self._since is None or seen != self._seen:
            self._seen, self._since = seen, now
            return False
        if not self.fired and now - self._since >= self.timeout and not self._stop.is_set():
            self.fired = True
            self.on_silence(time.time() - (now - self._since))
            return True
        return False

    def _run(self):
        while not self._stop.wait(self.interval) and not self.fired:
            self.check()

    def start(self):
        touch_mark(self.mark)
        self.check()
        self._thread = threading.Thread(target=self._run, name='controller-watch')
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None
        try:
            os.unlink(self.mark)
        except OSError:
            pass


class Guard(object):
    """The lease's heartbeat and the controller watch of one long module: ``start()``, the work, ``stop()``.

    ``stop()`` returns why the module must fail though its work may have ended: the lost lease's message,
    or the cancel's. After a cancel the module's programs are stopped, the module fails its own way
    (``stop()`` waits until the lease is released and the state written), and a module that does not come
    to ``stop()`` in time is interrupted (KeyboardInterrupt), then ended.
    """

    def __init__(self, lease, step, mark=None, timeout=0, cleanup=None):
        self.lease = lease or None
        self.step = step
        self.beat = _locks.Heartbeat(lease)
        self.watch = ControllerWatch(mark, timeout, self._cancel) if mark and timeout and timeout > 0 else None
        self.cleanup = cleanup
        self.cancelled = None
        self._arrived = threading.Event()
        self._done = threading.Event()

    def start(self):
        self.beat.start()
        if self.watch is not None:
            self.watch.start()
        return self

    def _cancel(self, last_poll):
        """The watch thread's work once the controller is silent."""
        if self._arrived.is_set():
            self._done.set()  # the work ended meanwhile: the module reports it as usual
            return
        # No more renewals: from here the lease is released, never kept alive.
        self.beat.halt()
        pids = set(kill_tree(os.getpid()))
        started = time.monotonic()
        # No program was running: the module is busy in Python, and nothing it waits for will end. Interrupt it now.
        grace = MODULE_GRACE_S if pids else 0
        interrupted = False
        while not self._arrived.wait(0 if not interrupted and not grace else 1.0):
            waited = time.monotonic() - started
            if waited >= MODULE_DEADLINE_S:
                break
            if waited >= grace and not interrupted and _thread is not None:
                interrupted = True
                _thread.interrupt_main()  # a module busy in Python (no program to stop) stops here
            pids.update(kill_tree(os.getpid()))  # what the module started on its way out
        if self.cleanup is not None:
            try:
                self.cleanup()
            except Exception:  # pylint: disable=broad-except
                pass
        if self.lease is not None:
            try:
                _locks.release_lease(self.lease['path'], self.lease['token'])
            except (OSError, _locks.LockBusy):
                pass
        where = os.path.dirname(self.lease['path'] if self.lease else self.watch.mark)
        try:
            self.cancelled = write_state(where, cancel_record(self.step, last_poll, sorted(pids)))['message']
        except OSError as e:
            self.cancelled = 'cancelled: the controller stopped polling at %s (state not written: %s)' % (
                _locks.utc_text(last_poll), e)
        self._done.set()
        if not self._arrived.is_set():
            os._exit(1)  # the module never came back: nothing more may run under a released lease

    def check(self):
        """Before each destructive act: raise LeaseLost unless the lease is this run's right now (a cancel gave
        it up already: that raises too)."""
        self.beat.check()

    def stop(self):
        """Stop; the message the module must fail with (cancelled, or the lease lost), else None."""
        self._arrived.set()
        if self.watch is not None and self.watch.fired:
            self._done.wait(MODULE_DEADLINE_S + 30)
        if self.watch is not None:
            self.watch.stop()
        lost = self.beat.stop()  # halted by a cancel: no last renewal of the released lease
        return self.cancelled or lost

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


def guard(module, step, cleanup=None):
    """Start the ``Guard`` of ``module`` (its ``lease``, ``controller_mark``, ``controller_timeout``; none in
    check mode)."""
    p = module.params
    if module.check_mode:
        return Guard(None, step).start()
    return Guard(_locks.lease_of(p), step, p.get('controller_mark'), p.get('controller_timeout') or 0, cleanup).start()
