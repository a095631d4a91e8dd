# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_host: processes, space, a program's failure as one line, small files written atomically."""

import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from ansible_collections.alation.backup.plugins.module_utils import _host


def test_pid_state_of_live_dead_and_other_programs():
    assert _host.pid_state(os.getpid()) == 'alive' and _host.pid_alive(os.getpid())
    # Our own pid runs python, not pg_probackup: a reused pid for that program.
    assert _host.pid_state(os.getpid(), 'pg_probackup') == 'reused'
    assert _host.pid_state(os.getpid(), 'python') == 'alive'
    gone = subprocess.Popen([sys.executable, '-c', 'pass'])
    gone.wait()
    assert _host.pid_state(gone.pid) == 'dead' and not _host.pid_alive(gone.pid)
    assert _host.pid_state(None) == 'dead' and _host.pid_state(0) == 'dead'


def test_a_zombie_is_dead():
    proc = subprocess.Popen(['sleep', '60'])
    os.kill(proc.pid, signal.SIGKILL)
    for dummy in range(100):
        with open('/proc/%d/stat' % proc.pid) as f:
            if f.read().rsplit(')', 1)[1].split()[0] == 'Z':
                break
        time.sleep(0.02)
    try:
        assert _host.pid_state(proc.pid) == 'dead'
    finally:
        proc.wait()


def test_check_space_names_what_where_and_what_to_do(tmp_path):
    assert _host.check_space(str(tmp_path / 'not/yet'), 1, 'x', 'y') > 0
    pattern = (r'^not enough free space for the thing in .*: \d+ bytes \(.*\) free, '
               r'1125899906842624 bytes \(1024.0 TiB\) needed; free some$')
    with pytest.raises(_host.HostError, match=pattern):
        _host.check_space(str(tmp_path), 2 ** 50, 'the thing', 'free some')

    class Mine(_host.HostError):
        pass
    with pytest.raises(Mine):
        _host.check_space(str(tmp_path), 2 ** 50, 'x', 'y', error=Mine)


@pytest.mark.parametrize('n, text', [(0, '0 B'), (1023, '1023 B'), (1536, '1.5 KiB'), (3 * 2 ** 30, '3.0 GiB')])
def test_human(n, text):
    assert _host.human(n) == text


def test_tree_bytes_counts_files_once_and_never_follows_links(tmp_path):
    (tmp_path / 'd').mkdir()
    (tmp_path / 'd' / 'a').write_bytes(b'x' * 100)
    os.link(str(tmp_path / 'd' / 'a'), str(tmp_path / 'd' / 'b'))
    os.symlink('/etc', str(tmp_path / 'd' / 'etc'))
    assert _host.tree_bytes(str(tmp_path / 'd')) == 100
    assert _host.tree_bytes(str(tmp_path / 'd' / 'a')) == 100
    assert _host.tree_bytes(str(tmp_path / 'missing')) == 0


@pytest.mark.parametrize('stderr, expected', [
    ('psql: error: connection to server failed\n', 'psql: error: connection to server failed'),
    ('WARNING: x\nFATAL:  role "x" does not exist\n', 'FATAL:  role "x" does not exist'),
    ('a\nb\nc\nd\n', 'b c d'),
    # tar's give-up line is no error marker: the cause before it stays in view.
    ('gzip: stdin: not in gzip format\ntar: Child returned status 1\ntar: Error is not recoverable: exiting now\n',
     'gzip: stdin: not in gzip format tar: Child returned status 1 tar: Error is not recoverable: exiting now'),
    (b'ERROR: bytes too\n', 'ERROR: bytes too'),
    ('', 'no error output'),
    (None, 'no error output'),
])
def test_stderr_summary(stderr, expected):
    assert _host.stderr_summary(stderr) == expected


@pytest.mark.parametrize('rc, text', [
    (2, 'pg_ctl failed with exit code 2: FATAL: x'),
    (-9, 'pg_ctl was killed by signal 9 (exit code -9): FATAL: x'),
    (143, 'pg_ctl was killed by signal 15 (exit code 143): FATAL: x'),
])
def test_command_failure(rc, text):
    assert _host.command_failure('pg_ctl', rc, 'LOG: y\nFATAL: x\n') == text


def test_write_file_replaces_atomically_with_mode_and_leaves_no_temp(tmp_path):
    path = str(tmp_path / 'f')
    _host.write_file(path, 'one')
    _host.write_file(path, b'two', mode=0o640)
    assert open(path).read() == 'two' and stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert os.listdir(str(tmp_path)) == ['f']


def test_write_file_exclusive_never_overwrites_nor_follows_a_link(tmp_path):
    path = str(tmp_path / 'lease')
    _host.write_file(path, 'mine', replace=False)
    with pytest.raises(FileExistsError):
        _host.write_file(path, 'theirs', replace=False)
    assert open(path).read() == 'mine'
    (tmp_path / 'target').write_text('keep')
    os.symlink(str(tmp_path / 'target'), str(tmp_path / 'link'))
    with pytest.raises(OSError):
        _host.write_file(str(tmp_path / 'link'), 'x', replace=False)
    assert (tmp_path / 'target').read_text() == 'keep'


def test_make_private_dir(tmp_path):
    path = str(tmp_path / 'a' / 'b')
    _host.make_private_dir(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
    os.symlink(path, str(tmp_path / 'link'))
    with pytest.raises(_host.HostError, match='is not a directory \\(a symlink\\)'):
        _host.make_private_dir(str(tmp_path / 'link'))
