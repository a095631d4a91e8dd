# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The look through /proc for other processes at work in the staging dirs, with real processes."""

import os
import shutil
import subprocess
import sys
import time

import pytest

from ansible_collections.alation.backup.plugins.module_utils import _proc_scan

SLEEP = shutil.which('sleep')


@pytest.mark.parametrize('argv, environ, expected', [
    (['pg_probackup', 'backup', '-B', '/data2/backup/pgbackup', '-b', 'FULL'], None, '/data2/backup/pgbackup'),
    (['/usr/local/bin/pg_probackup-15', 'backup', '--backup-path', '/c'], None, '/c'),
    (['pg_probackup', 'backup', '--backup-path=/c'], None, '/c'),
    (['pg_probackup', 'backup', '-B/c'], None, '/c'),
    (['pg_probackup', 'backup', '-b', 'DELTA'], {'BACKUP_PATH': '/env'}, '/env'),
    (['pg_probackup', 'backup', '-B', 'rel'], {'BACKUP_PATH': '/env'}, 'rel'),
    (['pg_probackup backup -B /titled'], None, '/titled'),
    (['pg_probackup', 'backup', '-B'], None, None),
    (['pg_probackup', 'version'], None, None),
    (['pg_basebackup', '-D', '/c'], None, None),
    (['rsync', '-B', '/c'], {'BACKUP_PATH': '/env'}, None),
    ([], None, None),
])
def test_catalog_arg(argv, environ, expected):
    assert _proc_scan.catalog_arg(argv, environ) == expected


@pytest.mark.parametrize('path, expected', [
    ('/s/tmp', '/s/tmp'),
    ('/s/tmp/a/b', '/s/tmp'),
    ('/s/tmpx', None),
    ('/s', None),
    ('socket:[123]', None),
    (None, None),
])
def test_within(path, expected):
    assert _proc_scan.within(path, ['/s/tmp']) == expected


@pytest.fixture
def dirs(tmp_path):
    staging, catalog = tmp_path / 'tmp', tmp_path / 'backup' / 'pgbackup'
    staging.mkdir()
    catalog.mkdir(parents=True)
    (staging / 'packing').write_text('half an archive')
    return str(staging), str(catalog)


@pytest.fixture
def started():
    procs = []

    def start(argv, **kwargs):
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)
        procs.append(proc)
        # Until it has exec'd: its cmdline is then the new program's.
        for dummy in range(100):
            with open('/proc/%d/cmdline' % proc.pid, 'rb') as f:
                if f.read().split(b'\0')[0] == argv[0].encode():
                    break
            time.sleep(0.02)
        return proc
    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def by_pid(found):
    return dict((f['pid'], f) for f in found)


def test_a_process_with_its_cwd_in_the_staging_dir_is_named(dirs, started):
    staging, catalog = dirs
    proc = started([SLEEP, '60'], cwd=os.path.join(staging))
    found = by_pid(_proc_scan.scan([staging, catalog], [catalog], exclude=_proc_scan.ancestors(os.getpid())))
    assert proc.pid in found, found
    assert found[proc.pid]['why'] == 'has its cwd %s in %s' % (staging, staging)
    assert found[proc.pid]['name'] == 'sleep' and found[proc.pid]['uid'] == os.getuid()
    assert _proc_scan.describe(found[proc.pid]).startswith('pid %d (%s 60, uid %d) has its cwd' % (proc.pid, SLEEP, os.getuid()))
    assert os.getpid() not in found


def test_an_open_file_in_the_staging_dir_is_named(dirs, started):
    staging, catalog = dirs
    with open(os.path.join(staging, 'packing')) as f:
        proc = started([SLEEP, '60'], stdin=f)
    found = by_pid(_proc_scan.scan([staging], [catalog]))
    assert found[proc.pid]['why'] == 'has %s open in %s' % (os.path.join(staging, 'packing'), staging)


def test_a_pg_probackup_on_the_catalog_is_named(dirs, started):
    staging, catalog = dirs
    # A stand-in with pg_probackup's command line: python sleeping, named pg_probackup by its argv.
    argv = ['pg_probackup', '-c', 'import time; time.sleep(60)', 'backup', '-B', catalog, '-b', 'FULL']
    proc = started(argv, executable=sys.executable, cwd='/')
    # And one named by the environment, as pg_probackup also takes it: sleep under the name.
    by_env = started(['pg_probackup', '60'], executable=SLEEP, cwd='/', env=dict(os.environ, BACKUP_PATH=catalog))
    elsewhere = started(['pg_probackup', '-c', 'import time; time.sleep(60)', '-B', catalog + '-other'],
                        executable=sys.executable, cwd='/')
    found = by_pid(_proc_scan.scan([staging, catalog], [catalog], exclude=_proc_scan.ancestors(os.getpid())))
    assert found[proc.pid]['why'] == 'runs pg_probackup on the pg staging dir (catalog %s)' % catalog
    assert found[proc.pid]['cmdline'].startswith('pg_probackup -c import time')
    assert found[by_env.pid]['why'] == 'runs pg_probackup on the pg staging dir (catalog %s)' % catalog
    assert elsewhere.pid not in found
    assert os.getpid() not in found


def test_a_relative_catalog_is_read_from_the_process_cwd(dirs, started):
    staging, catalog = dirs
    proc = started(['pg_probackup', '-c', 'import time; time.sleep(60)', '-B', 'pgbackup'],
                   executable=sys.executable, cwd=os.path.dirname(catalog))
    found = by_pid(_proc_scan.scan([staging], [catalog]))
    assert 'catalog pgbackup' in found[proc.pid]['why']


@pytest.mark.skipif(os.geteuid() != 0, reason='chroot needs root')
def test_a_pg_probackup_in_a_chroot_is_seen_through_its_root(dirs, started):
    staging, catalog = dirs
    # The shell: the catalog's grandparent is the chroot, and the process names /backup/pgbackup inside it.
    root = os.path.dirname(os.path.dirname(catalog))
    code = 'import os, time; os.chroot(%r); os.chdir("/"); print("in", flush=True); time.sleep(60)' % root
    proc = subprocess.Popen(['pg_probackup', '-c', code, 'backup', '-B', '/backup/pgbackup'],
                            executable=sys.executable, stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b'in\n'
        found = by_pid(_proc_scan.scan([staging], [catalog]))
        assert found[proc.pid]['why'] == 'runs pg_probackup on the pg staging dir (catalog /backup/pgbackup)'
        # Outside the chroot the same path is another dir.
        assert proc.pid not in by_pid(_proc_scan.scan([], ['/backup/pgbackup']))
    finally:
        proc.kill()
        proc.wait()


def test_this_run_and_its_parents_are_not_counted(dirs):
    staging, catalog = dirs
    here = os.getcwd()
    os.chdir(staging)
    try:
        assert os.getpid() in by_pid(_proc_scan.scan([staging], [catalog]))
        assert _proc_scan.scan([staging], [catalog], exclude=_proc_scan.ancestors(os.getpid())) == []
    finally:
        os.chdir(here)


def test_ancestors_go_up_to_init():
    chain = _proc_scan.ancestors(os.getpid())
    assert chain[0] == os.getpid() and chain[1] == os.getppid()
    assert chain[-1] in (0, 1) or len(chain) >= 2


def test_nothing_there_finds_nothing(dirs):
    staging, catalog = dirs
    assert _proc_scan.scan([staging], [catalog], exclude=_proc_scan.ancestors(os.getpid())) == []
