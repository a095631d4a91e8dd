# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

import os

import pytest

from ansible_collections.alation.backup.plugins.module_utils import _secret_file
from ansible_collections.alation.backup.plugins.modules import secret_file

from .utils import run_module

SHM = '/dev/shm'
needs_shm = pytest.mark.skipif(not os.path.isdir(SHM) or _secret_file.fs_type(SHM) not in _secret_file.MEMORY_FS,
                               reason='no tmpfs at /dev/shm')


@needs_shm
def test_writes_the_file_and_never_returns_the_secret():
    failed, result = run_module(secret_file.main, dict(content='hunter2', purpose='unit_pw',
                                                       lease=dict(path='/x/.alation_backup.lock', token='tok-m')))
    try:
        assert not failed and result['changed']
        assert 'hunter2' not in repr(result)
        with open(result['path']) as f:
            assert f.read() == 'hunter2'
    finally:
        os.unlink(result['path'])


def test_check_mode_writes_nothing(tmp_path):
    failed, result = run_module(secret_file.main, dict(content='x', purpose='unit_pw', dir=str(tmp_path),
                                                       _ansible_check_mode=True))
    assert not failed and result['changed'] and os.listdir(str(tmp_path)) == []


def test_a_disk_dir_is_refused(tmp_path):
    if _secret_file.fs_type(str(tmp_path)) in _secret_file.MEMORY_FS:
        pytest.skip('the test dir is on a tmpfs here')
    failed, result = run_module(secret_file.main, dict(content='x', purpose='unit_pw', dir=str(tmp_path)))
    assert failed and 'not in memory' in result['msg'] and os.listdir(str(tmp_path)) == []


def test_a_purpose_that_is_not_one_word_is_refused(tmp_path):
    failed, result = run_module(secret_file.main, dict(content='x', purpose='../etc', dir=str(tmp_path)))
    assert failed and 'one word' in result['msg']
