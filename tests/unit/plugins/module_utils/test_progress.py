# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_progress: the progress arithmetic and its words, and what it reads on the host."""

import os

import pytest

from ansible_collections.alation.backup.plugins.module_utils import _progress
from ansible_collections.alation.backup.plugins.module_utils._archive_names import host_label


@pytest.mark.parametrize('seconds, text', [
    (0, '0.0s'), (None, '0.0s'), (-3, '0.0s'), (0.42, '0.4s'), (9.94, '9.9s'), (9.96, '10s'), (45, '45s'),
    (59.6, '1m00s'), (60, '1m00s'),
    (842, '14m02s'), (3599, '59m59s'), (3600, '1h00m'), (7380, '2h03m'), (90061, '25h01m'),
])
def test_human_duration(seconds, text):
    assert _progress.human_duration(seconds) == text


def test_progress_line_as_the_issue_shows_it():
    gib, mib = 1024 ** 3, 1024 ** 2
    line = _progress.progress_line('alation-prod-1', 'archive', int(3.2 * gib), int(12.7 * gib), 85.1 * mib, 112)
    assert line == 'alation-prod-1: archive 3.2 GiB of ~12.7 GiB (25%), 85.1 MiB/s, ~1m52s left'


def test_progress_line_without_estimate_rate_or_time_left():
    assert _progress.progress_line('h', 'database', 2048) == 'h: database 2.0 KiB'
    assert _progress.progress_line('h', 'database', 2048, rate=1024) == 'h: database 2.0 KiB, 1.0 KiB/s'


def test_progress_line_past_the_estimate_stays_below_100_and_says_finishing():
    assert _progress.progress_line('h', 'database', 300, 200, 10, 0) == 'h: database 300 B of ~200 B (99%), 10 B/s, finishing'


def test_tracker_counts_growth_from_the_first_sample_and_averages_the_rate():
    t = _progress.Tracker(estimate=1000)
    assert t.add(10.0, 5000) == 0  # what the pg staging dir held before (an incremental chain)
    assert t.rate() is None and t.left() is None
    assert t.add(20.0, 5100) == 100
    assert t.add(30.0, 5300) == 300
    assert t.rate() == 15.0  # 300 bytes in 20 s
    assert t.left() == pytest.approx(700 / 15.0)
    assert t.line('h', 'database') == 'h: database 300 B of ~1000 B (30%), 15 B/s, ~47s left'


def test_tracker_with_a_baseline_of_zero_and_never_backwards():
    t = _progress.Tracker(estimate=0, baseline=0)
    assert t.add(0.0, 400) == 400  # the archive writer had read 400 bytes at the first poll
    assert t.add(2.0, 300) == 400  # a gap in /proc: not backwards
    assert t.add(4.0, 800) == 800
    assert t.rate() == 100.0 and t.left() is None
    assert t.line('h', 'archive') == 'h: archive 800 B, 100 B/s'


def test_a_nothing_yet_rate_leaves_the_time_left_unknown():
    t = _progress.Tracker(estimate=100)
    t.add(0.0, 0)
    t.add(5.0, 0)
    assert t.rate() == 0 and t.left() is None


def tree(root, files):
    for rel, size in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'wb') as f:
            f.write(b'x' * size)


def test_watched_bytes_sums_the_paths_and_a_missing_one_is_zero(tmp_path):
    tree(str(tmp_path), {'a/1': 10, 'a/b/2': 20, 'c/3': 5})
    assert _progress.watched_bytes([str(tmp_path / 'a'), str(tmp_path / 'c'), str(tmp_path / 'gone')]) == 35


def test_read_positions_of_our_own_open_file(tmp_path):
    path = str(tmp_path / 'f')
    tree(str(tmp_path), {'f': 100})
    fd = os.open(path, os.O_RDONLY)
    try:
        os.read(fd, 37)
        assert _progress.read_positions(os.getpid())[os.path.realpath(path)] == 37
    finally:
        os.close(fd)
    assert _progress.read_positions(999999999) == {}


def test_archive_read_bytes_follows_the_writers_order(tmp_path):
    staging, pg = str(tmp_path / 'tmp'), str(tmp_path / 'pgbackup')
    tree(staging, {'x': 10, 'sub/y': 20})
    tree(pg, {'base/1': 100, 'base/2': 50, 'wal/3': 7})
    total = 10 + 20 + 100 + 50 + 7
    # iter_entries goes sorted: tmp/sub/y, tmp/x, then pgbackup/base/1, base/2, wal/3.
    assert _progress.archive_read_bytes([staging, pg], {}) == (None, total)
    assert _progress.archive_read_bytes([staging, pg], {os.path.join(staging, 'x'): 4}) == (24, total)
    assert _progress.archive_read_bytes([staging, pg], {os.path.join(pg, 'base', '2'): 30}) == (160, total)
    # An offset past the file's size (it grew) counts the size; a file of another tree is no position.
    assert _progress.archive_read_bytes([staging, pg], {os.path.join(pg, 'wal', '3'): 99}) == (total, total)
    assert _progress.archive_read_bytes([staging, pg], {'/etc/passwd': 5}) == (None, total)
    assert _progress.archive_read_bytes([str(tmp_path / 'gone')], {}) == (None, 0)


def test_archive_writer_is_the_live_pid_its_temporary_file_names(tmp_path):
    dest = str(tmp_path)
    name = '202611301402_5-17-0-116556_alation_backup.tar.gz'
    assert _progress.archive_writer(dest) is None
    for n in ('.%s.%s.%d.tmp' % (name, host_label(), 999999999),  # dead writer
              '.%s.sha256.%s.%d.tmp' % (name, host_label(), os.getpid()),  # the .sha256, not the archive
              '.%s.otherhost.%d.tmp' % (name, os.getpid())):  # another host's, on a shared dest
        open(os.path.join(dest, n), 'w').close()
    assert _progress.archive_writer(dest) is None
    open(os.path.join(dest, '.%s.%s.%d.tmp' % (name, host_label(), os.getpid())), 'w').close()
    assert _progress.archive_writer(dest) == os.getpid()
    assert _progress.archive_writer(str(tmp_path / 'gone')) is None


def test_read_job_says_missing_running_or_written_and_removes_a_finished_jobs_file(tmp_path):
    d = str(tmp_path)
    assert _progress.read_job(d, 'j1') == ('missing', None)
    (tmp_path / 'j1').write_text('')
    assert _progress.read_job(d, 'j1') == ('running', None)
    started = '{"started": 1, "finished": 0, "ansible_job_id": "j1"}'
    (tmp_path / 'j1').write_text(started)
    assert _progress.read_job(d, 'j1') == ('written', started)
    assert (tmp_path / 'j1').exists(), 'a running job keeps its file'
    done = '{"changed": true, "msg": "ok"}'
    (tmp_path / 'j1').write_text(done)
    assert _progress.read_job(d, 'j1') == ('written', done)
    assert not (tmp_path / 'j1').exists(), 'read once finished, then removed'


def test_read_job_stays_in_its_dir(tmp_path):
    (tmp_path / 'x').write_text('{"finished": 1}')
    assert _progress.read_job(str(tmp_path / 'sub'), '../x') == ('missing', None)


# -- the long poll -------------------------------------------------------------------

RUNNING_JOB = '{"started": 1, "finished": 0, "ansible_job_id": "j1"}'
DONE_JOB = '{"changed": true, "msg": "ok"}'


class Host(object):
    """A fake clock whose sleeps let the job (a status file in ``async_dir``) finish at ``done_at`` seconds,
    written as async_wrapper writes it (a temporary file renamed over the status file)."""

    def __init__(self, async_dir, done_at=None, text=DONE_JOB):
        self.now, self.async_dir, self.done_at, self.text = 0.0, async_dir, done_at, text
        self.sleeps = []
        with open(os.path.join(async_dir, 'j1'), 'w') as f:
            f.write(RUNNING_JOB)

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds
        if self.done_at is not None and self.now >= self.done_at:
            self.done_at = None
            tmp = os.path.join(self.async_dir, 'j1.tmp')
            with open(tmp, 'w') as f:
                f.write(self.text)
            os.rename(tmp, os.path.join(self.async_dir, 'j1'))


def test_a_job_finishing_during_the_wait_is_seen_within_a_fifth_of_a_second(tmp_path):
    host = Host(str(tmp_path), done_at=0.3)
    assert _progress.wait_job(str(tmp_path), 'j1', 30, host.clock, host.sleep) == ('written', DONE_JOB, True)
    assert host.now == pytest.approx(0.4), 'finished 0.3 s into the look: seen at the next look at the file'
    assert not (tmp_path / 'j1').exists(), 'read once finished, then removed'


def test_a_running_job_is_waited_for_wait_seconds_and_read_only_once(tmp_path, monkeypatch):
    host = Host(str(tmp_path))
    reads = []
    read = _progress._read_job_file
    monkeypatch.setattr(_progress, '_read_job_file', lambda path: reads.append(path) or read(path))
    assert _progress.wait_job(str(tmp_path), 'j1', 3, host.clock, host.sleep) == ('written', RUNNING_JOB, False)
    assert host.now == pytest.approx(3) and max(host.sleeps) == pytest.approx(_progress.JOB_LOOK_S)
    assert len(reads) == 1, 'between two reads a stat says the file did not change'
    assert (tmp_path / 'j1').exists()


@pytest.mark.parametrize('wait', [0, -5])
def test_no_wait_looks_once(tmp_path, wait):
    host = Host(str(tmp_path), done_at=0.1)
    assert _progress.wait_job(str(tmp_path), 'j1', wait, host.clock, host.sleep) == ('written', RUNNING_JOB, False)
    assert host.sleeps == []


def test_a_missing_job_is_not_waited_for(tmp_path):
    host = Host(str(tmp_path))
    os.unlink(str(tmp_path / 'j1'))
    assert _progress.wait_job(str(tmp_path), 'j1', 30, host.clock, host.sleep) == ('missing', None, True)
    assert host.sleeps == []


def test_a_failed_job_ends_the_wait_too(tmp_path):
    failed = '{"started": 1, "finished": 1, "failed": true, "msg": "timed out"}'
    host = Host(str(tmp_path), done_at=1.0, text=failed)
    assert _progress.wait_job(str(tmp_path), 'j1', 30, host.clock, host.sleep) == ('written', failed, True)
    assert host.now == pytest.approx(1.0)


def marks(monkeypatch):
    """The poll marks left, one entry each time."""
    left = []
    monkeypatch.setattr(_progress, 'touch_mark', left.append)
    return left


def test_a_look_leaves_the_mark_when_it_starts_and_when_it_returns(tmp_path, monkeypatch):
    host = Host(str(tmp_path))
    mark = tmp_path / 'lock.poll'
    mark.write_text('')
    touched = []
    monkeypatch.setattr(_progress, 'touch_mark', lambda path: touched.append((path, host.now)))
    found = _progress.look(dict(job_id='j1', async_dir=str(tmp_path), wait=20, controller_mark=str(mark)),
                           clock=host.clock, sleep=host.sleep)
    assert touched == [(str(mark), 0.0), (str(mark), pytest.approx(20))]
    assert found['job'] == 'written' and found['job_text'] == RUNNING_JOB


def test_a_look_leaves_no_mark_once_the_step_finished_nor_in_check_mode(tmp_path, monkeypatch):
    mark = tmp_path / 'lock.poll'
    mark.write_text('')
    touched = marks(monkeypatch)
    host = Host(str(tmp_path), done_at=2)
    found = _progress.look(dict(job_id='j1', async_dir=str(tmp_path), wait=20, controller_mark=str(mark),
                                watch=[str(tmp_path)], measure=['end']), clock=host.clock, sleep=host.sleep)
    assert touched == [str(mark)], 'the step removes its mark when it ends: it must not come back'
    assert found['job_text'] == DONE_JOB and found['bytes'] is None, 'nothing measured for a finished step'
    host = Host(str(tmp_path))
    _progress.look(dict(job_id='j1', async_dir=str(tmp_path), wait=1, controller_mark=str(mark)), check_mode=True,
                   clock=host.clock, sleep=host.sleep)
    assert touched == [str(mark)]
    os.unlink(str(mark))
    _progress.look(dict(job_id='j1', async_dir=str(tmp_path), controller_mark=str(mark)))
    assert touched == [str(mark)] and not mark.exists(), 'a mark that is not there is not made'


def test_a_look_measures_before_and_after_the_wait_and_the_estimate_once(tmp_path, monkeypatch):
    staging = tmp_path / 'pgbackup'
    staging.mkdir()
    (staging / 'older').write_bytes(b'x' * 100)
    pgdata = tmp_path / 'pgdata'
    pgdata.mkdir()
    (pgdata / 'base').write_bytes(b'x' * 1000)
    jobs = tmp_path / 'async'
    jobs.mkdir()
    host = Host(str(jobs))
    sleep = host.sleep

    def grow(seconds):
        sleep(seconds)
        (staging / 'new').write_bytes(b'x' * int(host.now * 10))

    walked = []
    watched = _progress.watched_bytes
    monkeypatch.setattr(_progress, 'watched_bytes', lambda paths: walked.append(list(paths)) or watched(paths))
    found = _progress.look(dict(job_id='j1', async_dir=str(jobs), wait=5, watch=[str(staging)],
                                estimate_paths=[str(pgdata)], measure=['start', 'end']), clock=host.clock, sleep=grow)
    assert found['start_bytes'] == 100 and found['bytes'] == 150 and found['estimate_bytes'] == 1000
    assert walked.count([str(pgdata)]) == 1, 'PGDATA is walked once'
    # Without measure, the default: one measure, after the wait (as a look with no wait always did).
    found = _progress.look(dict(watch=[str(staging)]))
    assert found['bytes'] == 150 and 'start_bytes' not in found and 'job' not in found


def test_nobody_reads_once_the_reader_of_the_pipe_is_gone(tmp_path):
    reader, writer = os.pipe()
    try:
        assert _progress.nobody_reads(writer) is False
        os.close(reader)
        assert _progress.nobody_reads(writer) is True
    finally:
        os.close(writer)
    with open(str(tmp_path / 'out'), 'w') as f:
        assert _progress.nobody_reads(f.fileno()) is False, 'a file always takes what is written'
    assert _progress.nobody_reads(-1) is False, 'poll will not say: not gone'


def test_a_look_whose_controller_went_away_ends_at_once_and_leaves_no_mark(tmp_path, monkeypatch):
    mark = tmp_path / 'lock.poll'
    mark.write_text('')
    touched = []
    host = Host(str(tmp_path))
    monkeypatch.setattr(_progress, 'touch_mark', lambda path: touched.append(host.now))
    # The controller dies 1 s into a 30 s look: the step's silence must count from the look's start.
    found = _progress.look(dict(job_id='j1', async_dir=str(tmp_path), wait=30, controller_mark=str(mark),
                                watch=[str(tmp_path)], measure=['end']),
                           clock=host.clock, sleep=host.sleep, gone=lambda: host.now >= 1)
    assert touched == [0.0] and found['controller_gone'] is True and found['bytes'] is None
    assert host.now == pytest.approx(1.0)
