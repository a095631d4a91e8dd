# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pg_probackup module's argument checks, binary lookup, lock refusal and state=absent.

These need no PostgreSQL; the runs against the real pg_probackup and a real
cluster are in tests/integration/test_pg_probackup.py.
"""

import os

import pytest

from ansible_collections.alation.backup.plugins.module_utils._locks import FileLock
from ansible_collections.alation.backup.plugins.modules import pg_probackup

from .utils import run_module


@pytest.fixture
def parent(tmp_path):
    d = tmp_path / 'backup'
    d.mkdir()
    return d


def make_catalog(path):
    (path / 'backups' / 'alation' / 'TP5HJN').mkdir(parents=True)
    (path / 'wal' / 'alation').mkdir(parents=True)
    (path / 'backups' / 'alation' / 'TP5HJN' / 'backup.control').write_text('status = OK\n')


@pytest.mark.parametrize('args, words', [
    (dict(catalog='relative/cat'), ['catalog=relative/cat', 'absolute path']),
    (dict(catalog='/'), ['catalog=/', 'absolute path below /']),
    (dict(catalog='/x/cat', compress_level=5), ['compression_level=5', 'zlib or pglz']),
    (dict(catalog='/x/cat', compress_algorithm='zlib', compression_level=12), ['compression_level=12', '0-9']),
    (dict(catalog='/x/cat', threads=0), ['threads=0', '1 or more']),
    (dict(catalog='/x/cat', lock_timeout=-1), ['lock_timeout=-1']),
    (dict(catalog='/x/cat', backup_mode='incremental'), ['backup_mode', 'incremental']),
    (dict(catalog='/x/cat', full_every=-1), ['full_every=-1', '0 (never force a FULL by count)']),
    (dict(catalog='/x/cat', full_every_days=-0.5), ['full_every_days=-0.5', '0 (never force a FULL by age)']),
])
def test_bad_arguments(args, words):
    failed, result = run_module(pg_probackup.main, args)
    assert failed
    for w in words:
        assert w in result['msg']


def test_binary_path_missing(parent):
    failed, result = run_module(pg_probackup.main, dict(catalog=str(parent / 'cat'), binary='/nonexistent/pg_probackup'))
    assert failed
    assert '/nonexistent/pg_probackup is not an executable file' in result['msg']


def test_binary_not_found_in_chroot_says_where_it_looked(tmp_path):
    chroot = tmp_path / 'chroot'
    (chroot / 'usr' / 'bin').mkdir(parents=True)
    (chroot / 'data').mkdir()
    failed, result = run_module(pg_probackup.main, dict(catalog='/data/cat', chroot=str(chroot), state='show'))
    assert failed
    msg = result['msg']
    assert msg.startswith('pg_probackup not found: looked for pg_probackup, pg_probackup-18')
    assert 'pg_probackup-15' in msg and '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' in msg
    assert 'inside the Alation shell %s' % chroot in msg


def test_binary_found_inside_chroot_by_versioned_name(tmp_path):
    chroot = tmp_path / 'chroot'
    (chroot / 'usr' / 'bin').mkdir(parents=True)
    exe = chroot / 'usr' / 'bin' / 'pg_probackup-15'
    exe.write_text('#!/bin/sh\nexit 0\n')
    exe.chmod(0o755)

    class FakeModule:
        def fail_json(self, **kw):
            raise AssertionError(kw)

    from ansible_collections.alation.backup.plugins.module_utils._runner import Runner
    runner = Runner(FakeModule(), str(chroot))
    assert pg_probackup.locate_binary(FakeModule(), runner, None) == '/usr/bin/pg_probackup-15'


def test_absent_removes_a_catalog(parent):
    cat = parent / 'cat'
    make_catalog(cat)
    failed, result = run_module(pg_probackup.main, dict(catalog=str(cat), state='absent'))
    assert not failed and result['changed']
    assert not cat.exists()
    assert result['executed_commands'] == []
    failed, result = run_module(pg_probackup.main, dict(catalog=str(cat), state='absent'))
    assert not failed and not result['changed']


def test_absent_check_mode_removes_nothing(parent):
    cat = parent / 'cat'
    make_catalog(cat)
    failed, result = run_module(pg_probackup.main, dict(catalog=str(cat), state='absent', _ansible_check_mode=True))
    assert not failed and result['changed']
    assert (cat / 'backups' / 'alation' / 'TP5HJN' / 'backup.control').exists()
    # check mode writes nothing, not even the lock file
    assert os.listdir(str(parent)) == ['cat']


@pytest.mark.parametrize('shape, words', [
    ('foreign', ['is not empty and is not a pg_probackup catalog', 'nothing was deleted']),
    ('symlink', ['is a symlink']),
    ('file', ['is not a directory']),
])
def test_absent_refuses_what_is_not_a_catalog(parent, shape, words):
    cat = parent / 'cat'
    keep = parent / 'other'
    keep.mkdir()
    (keep / 'precious').write_text('x')
    if shape == 'foreign':
        cat.mkdir()
        (cat / 'precious').write_text('x')
    elif shape == 'symlink':
        make_catalog(keep)
        cat.symlink_to(str(keep))
    else:
        cat.write_text('x')
    failed, result = run_module(pg_probackup.main, dict(catalog=str(cat), state='absent'))
    assert failed
    for w in words:
        assert w in result['msg']
    assert os.path.lexists(str(cat)) and (keep / 'precious').exists()


def test_absent_refuses_a_catalog_with_a_backup_running(parent):
    import subprocess
    cat = parent / 'cat'
    make_catalog(cat)
    proc = subprocess.Popen(['pg_probackup', '60'], executable='/bin/sleep')
    try:
        (cat / 'backups' / 'alation' / 'TP5HJN' / 'backup.pid').write_text('%d\n' % proc.pid)
        failed, result = run_module(pg_probackup.main, dict(catalog=str(cat), state='absent'))
    finally:
        proc.kill()
        proc.wait()
    assert failed and 'a backup is running in it (alation/TP5HJN: pid %d)' % proc.pid in result['msg']
    assert cat.exists()


def test_empty_dir_counts_as_a_catalog_for_absent(parent):
    cat = parent / 'cat'
    cat.mkdir()
    failed, result = run_module(pg_probackup.main, dict(catalog=str(cat), state='absent'))
    assert not failed and result['changed'] and not cat.exists()


def test_lock_held_refuses_at_once_with_the_holder_pid(parent):
    cat = parent / 'cat'
    make_catalog(cat)
    with FileLock(str(parent / '.cat.lock'), purpose='test'):
        failed, result = run_module(pg_probackup.main, dict(catalog=str(cat), state='absent'))
    assert failed
    assert result['msg'].startswith('another backup of this catalog is running (pid %d)' % os.getpid())
    assert result['lock_holder_pid'] == os.getpid()
    assert cat.exists()


def test_missing_parent_is_a_clear_failure(tmp_path):
    args = dict(catalog=str(tmp_path / 'no' / 'cat'), state='validate', binary='/bin/true')
    failed, result = run_module(pg_probackup.main, args)
    assert failed and 'the parent directory of catalog' in result['msg'] and 'does not exist' in result['msg']
