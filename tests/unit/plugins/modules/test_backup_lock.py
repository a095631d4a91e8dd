# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

import os
import time

from ansible_collections.alation.backup.plugins.modules import backup_lock

from .utils import run_module


def test_take_refuse_release(tmp_path):
    path = str(tmp_path / 'lock')
    failed, taken = run_module(backup_lock.main, dict(path=path, run_id='a', owner='alice'))
    assert not failed and taken['changed'] and 'token' not in taken['holder']
    failed, refused = run_module(backup_lock.main, dict(path=path, run_id='b', owner='bob'))
    assert failed and 'alice' in refused['msg'] and path in refused['msg']
    failed, released = run_module(backup_lock.main, dict(path=path, state='absent', token=taken['token']))
    assert not failed and released['changed'] and not os.path.exists(path)


def test_check_mode_only_inspects(tmp_path):
    path = str(tmp_path / 'lock')
    failed, result = run_module(backup_lock.main, dict(path=path, run_id='a', _ansible_check_mode=True))
    assert not failed and result['changed'] and not os.path.exists(path)


def test_check_mode_reports_a_held_lock(tmp_path):
    path = str(tmp_path / 'lock')
    run_module(backup_lock.main, dict(path=path, run_id='a', owner='alice'))
    failed, result = run_module(backup_lock.main, dict(path=path, run_id='b', _ansible_check_mode=True))
    assert failed and 'alice' in result['msg']


def test_missing_directory_is_a_clear_error(tmp_path):
    path = str(tmp_path / 'no-such-dir' / 'lock')
    failed, result = run_module(backup_lock.main, dict(path=path, run_id='a'))
    assert failed and 'does not exist' in result['msg'] and path in result['msg']


def test_a_dead_run_is_taken_over_with_a_warning_naming_it(tmp_path):
    path = str(tmp_path / 'lock')
    failed, dead = run_module(backup_lock.main, dict(path=path, run_id='awx-41', owner='alice', stale_after=1))
    failed, refused = run_module(backup_lock.main, dict(path=path, run_id='awx-42', owner='bob', stale_after=1))
    assert failed and 'frees itself once it has not been renewed for 1s' in refused['msg']
    assert 'remove' not in refused['msg'], 'nobody is sent to remove a lock by hand'
    time.sleep(1.1)
    failed, taken = run_module(backup_lock.main, dict(path=path, run_id='awx-42', owner='bob'))
    assert not failed and taken['taken_over']['holder']['run_id'] == 'awx-41'
    assert 'run awx-41 of alice' in taken['taken_over']['description']
    assert 'token' not in taken['taken_over']['holder']


def test_the_next_run_is_told_once_of_a_cancelled_run(tmp_path):
    from ansible_collections.alation.backup.plugins.module_utils import _watch
    path = str(tmp_path / '.alation_backup.lock')
    _watch.write_state(str(tmp_path), _watch.cancel_record('database', time.time() - 200))
    failed, taken = run_module(backup_lock.main, dict(path=path, run_id='a', owner='alice'))
    assert not failed and taken['previous_cancel']['message'].startswith('cancelled: the controller stopped polling at ')
    run_module(backup_lock.main, dict(path=path, state='absent', token=taken['token']))
    failed, again = run_module(backup_lock.main, dict(path=path, run_id='b', owner='alice'))
    assert not failed and again['previous_cancel'] is None
