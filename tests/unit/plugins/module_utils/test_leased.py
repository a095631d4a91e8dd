# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_locks.leased: the one way a module keeps the run's lease, stops keeping it, and fails for it."""

import os

import pytest

from ansible_collections.alation.backup.plugins.module_utils import _locks


class Exited(Exception):
    pass


class Failed(Exception):
    pass


class Module(object):
    def __init__(self, lease=None, check_mode=False):
        self.params = dict(lease=lease)
        self.check_mode = check_mode

    def exit_json(self, **result):
        raise Exited(result)

    def fail_json(self, **result):
        raise Failed(result)


class Beat(object):
    """A stand-in for _watch.Guard: its stop() says why, its cancelled is the cancel's message."""

    def __init__(self, why=None, cancelled=None):
        self.why, self.cancelled, self.stops = why, cancelled, 0

    def check(self):
        pass

    def stop(self):
        self.stops += 1
        return self.cancelled or self.why


@pytest.fixture
def lease(tmp_path):
    path = str(tmp_path / '.alation_backup.lock')
    record, dummy = _locks.acquire_lease(path, 'alice', 'run-1', 600)
    return dict(path=path, token=record['token'])


def take_over(lease):
    os.unlink(lease['path'])
    _locks.acquire_lease(lease['path'], 'bob', 'run-2', 600)


def test_the_block_renews_the_lease_and_stops_the_beat_on_the_way_out(lease):
    before = _locks.read_holder(lease['path'])['renewed']
    with _locks.leased(Module(lease)) as held:
        assert held.beat._thread is not None and held.beat._thread.is_alive()
        held.check()
    assert held.beat._thread is None
    assert _locks.read_holder(lease['path'])['renewed'] >= before
    with pytest.raises(Exited) as e:
        held.exit_json(changed=True)
    assert e.value.args[0] == dict(changed=True)


def test_the_beat_stops_when_the_work_raises(lease):
    held = _locks.leased(Module(lease))
    with pytest.raises(ValueError):
        with held:
            raise ValueError('the work failed')
    assert held.beat._thread is None


def test_a_lease_lost_in_the_block_fails_the_module_saying_what_was_not_done(lease):
    held = _locks.leased(Module(lease), 'removing anything more')
    with pytest.raises(Failed) as e:
        with held:
            held.result.update(removed=[])
            take_over(lease)
            held.check()
    msg = e.value.args[0]['msg']
    assert 'no longer holds the host lock' in msg and 'run run-2 of bob' in msg
    assert msg.endswith('Stopped before removing anything more: nothing more was changed')
    assert e.value.args[0]['removed'] == [] and held.beat._thread is None


def test_a_lease_lost_while_working_fails_at_the_end_with_what_was_done(lease):
    with _locks.leased(Module(lease)) as held:
        take_over(lease)
    with pytest.raises(Failed) as e:
        held.exit_json(done='The archive /x was written and verified.', path='/x')
    assert 'no longer holds the host lock' in e.value.args[0]['msg']
    assert e.value.args[0]['msg'].endswith('. The archive /x was written and verified.')
    assert e.value.args[0]['path'] == '/x'


@pytest.mark.parametrize('value', [None, {}, dict(path=None, token=None)])
def test_no_lease_is_nothing_to_keep(value):
    held = _locks.leased(Module(value))
    assert held.beat.lease is None
    with held:
        held.check()
    with pytest.raises(Exited):
        held.exit_json()


def test_check_mode_keeps_no_lease(lease):
    assert _locks.leased(Module(lease, check_mode=True)).beat.lease is None


def test_a_cancel_explains_whatever_failed_after_it():
    held = _locks.leased(Module(), beat=Beat(cancelled='cancelled: the controller stopped polling'))
    with pytest.raises(Failed) as e:
        held.fail_json('pg_probackup failed', rc=1)
    assert e.value.args[0] == dict(msg='cancelled: the controller stopped polling', rc=1)
    with pytest.raises(Failed) as e:
        held.exit_json(done='it was written')
    assert e.value.args[0]['msg'] == 'cancelled: the controller stopped polling'


def test_the_steps_own_failure_wins_over_a_lost_lease():
    held = _locks.leased(Module(), beat=Beat(why='this run no longer holds the host lock'))
    with pytest.raises(Failed) as e:
        held.fail_json('pg_amcheck found corruption')
    assert e.value.args[0]['msg'] == 'pg_amcheck found corruption'


def test_the_beat_is_stopped_once_whatever_the_ways_out():
    beat = Beat()
    held = _locks.leased(Module(), beat=beat)
    with held:
        pass
    assert held.stop() is None
    with pytest.raises(Exited):
        held.exit_json()
    assert beat.stops == 1


def test_lease_of_reads_an_empty_lease_as_none(lease):
    assert _locks.lease_of(dict(lease=lease)) == lease
    for value in (None, {}, dict(path=None, token=None), dict(path='', token='')):
        assert _locks.lease_of(dict(lease=value)) is None
    assert _locks.lease_of({}) is None
