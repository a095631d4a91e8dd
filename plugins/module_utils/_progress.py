# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How far a long step has come: measured on the host, told on the controller.

Host side (the step_progress module): one look of the controller at a
step, which waits on the host for the step to finish (a long poll, so one
remote call a look however soon the step ends) and measures the bytes a
step has produced under
its watched paths (the pg staging dir), or the source bytes the archive
writer has read so far. The writer reads its sources one file at a time in
the order iter_entries gives, so the bytes before the file it has open plus
its offset in that file (``/proc/<pid>/fdinfo``) is where it is, whatever
compressor or verifier it runs.

Controller side (the wait_progress action): a Tracker turns the samples into
a rate and the time left, and progress_line into one line a person reads.
Standard library only: the module side runs on the hosts' Python 3.6+.
"""

import json
import os
import select
import stat
import time

from ansible_collections.alation.backup.plugins.module_utils._archive_names import host_label, tmp_pattern
from ansible_collections.alation.backup.plugins.module_utils._host import human, pid_alive, tree_bytes
from ansible_collections.alation.backup.plugins.module_utils._tar import iter_entries
from ansible_collections.alation.backup.plugins.module_utils._watch import touch_mark


# -- words ---------------------------------------------------------------------

def human_duration(seconds):
    """``0.42`` -> ``'0.4s'``, ``45`` -> ``'45s'``, ``842`` -> ``'14m02s'``, ``7380`` -> ``'2h03m'``."""
    exact = max(0.0, float(seconds or 0))
    if exact < 9.95:
        return '%.1fs' % exact  # a small run's steps take seconds: "0s" would say nothing
    s = int(round(exact))
    if s < 60:
        return '%ds' % s
    if s < 3600:
        return '%dm%02ds' % (s // 60, s % 60)
    return '%dh%02dm' % (s // 3600, (s % 3600) // 60)


def progress_line(host, label, done, estimate=0, rate=None, left=None):
    """``alation-prod-1: archive 3.2 GiB of ~12.7 GiB (25%), 85.1 MiB/s, ~1m52s left``.

    Without an estimate (0) the line has no share and no time left. The share
    stops at 99% until the step is over: an estimate is only an estimate.
    """
    text = '%s: %s %s' % (host, label, human(done))
    if estimate:
        text += ' of ~%s (%d%%)' % (human(estimate), min(99, int(100.0 * done / estimate)))
    if rate is not None:
        text += ', %s/s' % human(rate)
    if left is not None:
        text += ', ~%s left' % human_duration(left) if left > 0 else ', finishing'
    return text


class Tracker(object):
    """Samples of (seconds, bytes) since a step started: the rate and the time left.

    Without ``baseline``, the first sample is the baseline (what the watched
    path held before the step wrote to it, e.g. an incremental chain's older
    backups). The rate is the average since the first sample, steadier than
    the last interval's.
    """

    def __init__(self, estimate=0, baseline=None):
        self.estimate = max(0, int(estimate or 0))
        self.base = baseline
        self.first = self.last = None

    def add(self, when, measured):
        """Record ``measured`` bytes at ``when`` (seconds); return the bytes done since the baseline."""
        measured = max(0, int(measured or 0))
        if self.base is None:
            self.base = measured
        done = max(0, measured - self.base)
        if self.last is not None:
            done = max(done, self.last[1])  # never backwards (a file finished and renamed, a gap in /proc)
        self.last = (when, done)
        if self.first is None:
            self.first = self.last
        return done

    def rate(self):
        """Bytes a second between the first sample and the last, ``None`` before two samples."""
        if self.last is None or self.last[0] <= self.first[0]:
            return None
        return (self.last[1] - self.first[1]) / float(self.last[0] - self.first[0])

    def left(self):
        """Seconds left at the average rate, ``None`` when unknown (no estimate, nothing done yet)."""
        rate = self.rate()
        if not self.estimate or not rate:
            return None
        return max(0.0, (self.estimate - self.last[1]) / rate)

    def line(self, host, label):
        done = self.last[1] if self.last else 0
        return progress_line(host, label, done, self.estimate, self.rate(), self.left())


# -- host side -------------------------------------------------------------------

def watched_bytes(paths):
    """File bytes under ``paths`` (like ``du -s --apparent-size``; a missing path is 0)."""
    return sum(tree_bytes(p) for p in paths)


def archive_writer(dest, host=None):
    """The pid of the live archive writer of this host in ``dest`` (its temporary file names it), else None."""
    pattern = tmp_pattern()
    host = host or host_label()
    try:
        names = os.listdir(dest)
    except OSError:
        return None
    for name in sorted(names):
        m = pattern.match(name)
        if m and m.group('host') == host and not m.group('name').endswith('.sha256') \
                and pid_alive(int(m.group('pid'))):
            return int(m.group('pid'))
    return None


def read_positions(pid, proc='/proc'):
    """``{path: offset}`` of the regular files ``pid`` has open for reading; ``{}`` when /proc will not say."""
    found = {}
    fd_dir = os.path.join(proc, str(pid), 'fd')
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return found
    for fd in fds:
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
            with open(os.path.join(proc, str(pid), 'fdinfo', fd)) as f:
                info = dict(line.split(':', 1) for line in f.read().splitlines() if ':' in line)
        except (OSError, ValueError):
            continue
        flags = int(info.get('flags', '0').strip() or '0', 8)
        if flags & os.O_ACCMODE == os.O_RDONLY and target.startswith('/'):
            found[target] = int(info.get('pos', '0').strip() or '0')
    return found


def archive_read_bytes(sources, positions):
    """(source bytes read, source bytes in all) of an archive writer with ``positions`` open.

    ``sources`` are the archive's source paths in order. The bytes read are
    those of the files before the one open plus its offset; ``None`` when no
    source file is open (between two files, or writing is over).
    """
    total, done = 0, None
    for source in sources:
        # /proc names files by their real path: walk from the real path too.
        real = os.path.realpath(source)
        try:
            for path, dummy, st in iter_entries(real, os.path.basename(real)):
                if not stat.S_ISREG(st.st_mode):
                    continue
                if done is None and path in positions:
                    done = total + min(positions[path], st.st_size)
                total += st.st_size
        except OSError:
            continue  # missing, or changed under the walk: the next poll sees it settled
    return done, total


# Between two looks at a job's status file during a long poll: a finished job is noticed within this.
JOB_LOOK_S = 0.2


def _job_file(async_dir, job_id):
    return os.path.join(async_dir, os.path.basename(job_id))


def _read_job_file(path):
    """(state, text, over) of the status file at ``path``: over once the job finished (its file is then removed)
    or the file is missing."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return 'missing', None, True  # nothing more to wait for
    try:
        data = json.loads(text)
    except ValueError:
        return 'running', None, False  # async_wrapper has not written it whole yet
    over = isinstance(data, dict) and ('started' not in data or bool(data.get('finished')))
    if over:
        os.unlink(path)
    return 'written', text, over


def read_job(async_dir, job_id):
    """(state, text) of a background job's status file; a finished job's file is removed once read."""
    state, text, dummy = _read_job_file(_job_file(async_dir, job_id))
    return state, text


def _file_signature(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def nobody_reads(fd=1):
    """True once the pipe or socket ``fd`` writes to has no reader: the controller that called this module (through
    its connection) is gone. False for anything else (a file, a terminal) and when poll will not say."""
    try:
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for dummy, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):
        return False


def wait_job(async_dir, job_id, wait=0, clock=time.monotonic, sleep=time.sleep, gone=lambda: False):
    """``read_job``, waiting up to ``wait`` seconds for the job to finish: (state, text, over).

    async_wrapper writes the status file whole (a temporary file renamed over it), so between two reads a
    ``stat`` every JOB_LOOK_S tells whether it changed: the file is read again only then. Returns as soon as
    the job finished (or its file is missing), or ``gone()`` says the caller went away, else after ``wait``
    seconds with what the file says then.
    """
    path = _job_file(async_dir, job_id)
    deadline = clock() + max(0.0, float(wait or 0))
    seen = _file_signature(path)
    state, text, over = _read_job_file(path)
    while not over:
        left = deadline - clock()
        if left <= 0 or gone():
            break
        sleep(min(JOB_LOOK_S, left))
        now = _file_signature(path)
        if now != seen:
            seen = now
            state, text, over = _read_job_file(path)
    return state, text, over


# -- one look (the step_progress module) ---------------------------------------------

def measure(watch=(), storage_dir=None, archive_sources=(), estimate_paths=()):
    """How far the step has come now: ``{'bytes', 'estimate_bytes'}``, and ``writer_pid`` with ``storage_dir`` (the
    backup storage dir the archive is written to)."""
    found = dict(bytes=watched_bytes(watch), estimate_bytes=watched_bytes(estimate_paths))
    if storage_dir:
        pid = archive_writer(storage_dir)
        done, total = archive_read_bytes(archive_sources, read_positions(pid) if pid else {})
        found.update(bytes=done, writer_pid=pid, estimate_bytes=found['estimate_bytes'] or total)
    return found


def look(params, check_mode=False, clock=time.monotonic, sleep=time.sleep, gone=nobody_reads):
    """step_progress's result for its ``params``: the poll mark left, the bytes measured before the wait
    (``start_bytes``) and after it (``bytes``, None when the job finished meanwhile), the job's status file.

    The mark is left when the look starts and again when it ends, so the step sees a silence of at most
    ``wait`` seconds during a look. A look whose controller went away meanwhile (``gone()``: nobody reads
    its output any more) ends at once and leaves no mark: the step's silence counts from the look's start.
    The estimate is measured once, with the first measure of the look.
    """
    p = params
    mark = None if check_mode else p.get('controller_mark')

    def leave_mark():
        if mark and os.path.exists(mark):
            touch_mark(mark)

    leave_mark()
    where = dict(watch=p.get('watch') or (), storage_dir=p.get('storage_dir'),
                 archive_sources=p.get('archive_sources') or (), estimate_paths=p.get('estimate_paths') or ())
    when = ['end'] if p.get('measure') is None else p['measure']
    result = dict(changed=False, bytes=None, estimate_bytes=0)
    if 'start' in when:
        found = measure(**where)
        result.update(found, start_bytes=found.pop('bytes'), bytes=None)
        where['estimate_paths'] = ()
    over = False
    if p.get('job_id'):
        result['job'], text, over = wait_job(os.path.expanduser(p.get('async_dir') or '~/.ansible_async'), p['job_id'],
                                             p.get('wait') or 0, clock, sleep, gone)
        if text is not None:
            result['job_text'] = text
    if not over and gone():
        result['controller_gone'] = True  # nobody will read it: what matters is the mark not left
        return result
    if not over:
        leave_mark()  # a finished step has removed its mark: it must not come back
        if 'end' in when:
            found = measure(**where)
            found['estimate_bytes'] = result['estimate_bytes'] or found['estimate_bytes']
            result.update(found)
    return result
