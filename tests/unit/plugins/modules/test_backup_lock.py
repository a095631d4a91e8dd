# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

import json
import os
import time

import pytest

from ansible_collections.alation.backup.plugins.module_utils import _locks
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


# -- neighbours: one machine per storage dir ------------------------------------------------

NEIGHBOUR = dict(machine_id='fedcba9876543210fedcba9876543210', hostname='alation-neighbour')


def listing(root):
    return sorted((os.path.join(d, n), os.path.getsize(os.path.join(d, n)) if n in files else None)
                  for d, dirs, files in os.walk(str(root)) for n in dirs + files)


def test_the_first_run_writes_its_owner_marker(tmp_path):
    path = str(tmp_path / '.alation_backup.lock')
    failed, taken = run_module(backup_lock.main, dict(path=path, run_id='a', storage_dir=str(tmp_path),
                                                      pg_staging_dir=str(tmp_path / 'pgbackup')))
    assert not failed and taken['owner_markers'] == [str(tmp_path / '.alation_backup_owner')]
    assert taken['holder']['machine_id'] == _locks.this_machine()['machine_id']
    run_module(backup_lock.main, dict(path=path, state='absent', token=taken['token']))
    failed, again = run_module(backup_lock.main, dict(path=path, run_id='b', storage_dir=str(tmp_path)))
    assert not failed and again['owner_markers'] == []


@pytest.mark.parametrize('state', ['present', 'inspect'])
def test_a_storage_dir_another_machine_marked_is_refused_changing_nothing(tmp_path, state):
    (tmp_path / '.alation_backup_owner').write_text(json.dumps(NEIGHBOUR))
    (tmp_path / '202611300102_5-17-0-116556_alation_backup.tar.gz').write_bytes(b'theirs')
    before = listing(tmp_path)
    failed, result = run_module(backup_lock.main, dict(path=str(tmp_path / '.alation_backup.lock'), run_id='a',
                                                       state=state, storage_dir=str(tmp_path)))
    assert failed and result['msg'].startswith('refusing the run, nothing was changed: %s is used by another machine'
                                               % tmp_path)
    assert 'alation-neighbour' in result['msg'] and 'Give each host its own backup storage dir' in result['msg']
    assert result['foreign']['owner']['hostname'] == 'alation-neighbour'
    assert listing(tmp_path) == before, 'no lease taken, nothing written'


def test_another_machines_live_lease_is_refused_naming_that_host(tmp_path):
    path = str(tmp_path / '.alation_backup.lock')
    with open(path, 'w') as f:
        json.dump(dict(NEIGHBOUR, owner='carol', run_id='77-1', pid=4242, started=time.time() - 60,
                       renewed=time.time() - 5, stale_after=600, boot_id='their-boot', token='theirs'), f)
    before = listing(tmp_path)
    for args in (dict(storage_dir=str(tmp_path)), {}):  # with the storage dir: shared; without: a live neighbour
        failed, result = run_module(backup_lock.main, dict(path=path, run_id='a', **args))
        assert failed and 'run 77-1 of carol (pid 4242) on host alation-neighbour' in result['msg'], result['msg']
        assert listing(tmp_path) == before


def test_inspect_passes_a_dir_of_our_own_and_takes_nothing(tmp_path):
    path = str(tmp_path / '.alation_backup.lock')
    failed, result = run_module(backup_lock.main, dict(path=path, state='inspect', storage_dir=str(tmp_path)))
    assert not failed and not result['changed'] and os.listdir(str(tmp_path)) == []


def test_the_next_run_is_told_once_of_a_cancelled_run(tmp_path):
    from ansible_collections.alation.backup.plugins.module_utils import _watch
    path = str(tmp_path / '.alation_backup.lock')
    _watch.write_state(str(tmp_path), _watch.cancel_record('database', time.time() - 200))
    failed, taken = run_module(backup_lock.main, dict(path=path, run_id='a', owner='alice'))
    assert not failed and taken['previous_cancel']['message'].startswith('cancelled: the controller stopped polling at ')
    run_module(backup_lock.main, dict(path=path, state='absent', token=taken['token']))
    failed, again = run_module(backup_lock.main, dict(path=path, run_id='b', owner='alice'))
    assert not failed and again['previous_cancel'] is None


def test_drill_due_and_recorded_beside_the_lock(tmp_path):
    path = str(tmp_path / 'lock')
    failed, taken = run_module(backup_lock.main, dict(path=path, run_id='a', drill_every_days=7))
    assert not failed and taken['drill_due'] and taken['last_drill'] == {}
    assert 'no good drill' in taken['drill_reason']
    failed, kept = run_module(backup_lock.main, dict(path=path, run_id='a', drill_every_days=7,
                                                     drill=dict(result='ok', archive='x.tar.gz', duration_s=3)))
    assert not failed and kept['token'] == taken['token'] and kept['last_drill']['last_good']['archive'] == 'x.tar.gz'
    assert not kept['drill_due']
    run_module(backup_lock.main, dict(path=path, state='absent', token=taken['token']))
    # The next run finds it, and is not due.
    failed, nxt = run_module(backup_lock.main, dict(path=path, run_id='b', drill_every_days=7))
    assert not failed and not nxt['drill_due'] and 'younger than 7 days' in nxt['drill_reason']
    assert nxt['last_drill']['last']['result'] == 'ok'
    failed, off = run_module(backup_lock.main, dict(path=path, run_id='b'))
    assert not failed and not off['drill_due'] and off['drill_reason'].startswith('off')


def test_drill_every_days_below_zero_is_refused(tmp_path):
    failed, result = run_module(backup_lock.main, dict(path=str(tmp_path / 'lock'), run_id='a', drill_every_days=-1))
    assert failed and 'drill_every_days=-1' in result['msg']
