# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""wait_progress: polls the job, prints a progress line an interval, returns the job's own result."""

import json
from unittest import mock

import pytest

from ansible.playbook.task import Task

from ansible_collections.alation.backup.plugins.action import wait_progress

MIB = 1024 ** 2


class Clock(object):
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def action(args, statuses, probes, clock):
    """The action with a host that answers async_status with ``statuses`` and step_progress with ``probes``."""
    task = Task()
    task.args = args
    task.action = 'alation.backup.wait_progress'
    connection = mock.MagicMock()
    connection._shell.tmpdir = None
    plugin = wait_progress.ActionModule(task, connection, mock.MagicMock(), loader=None, templar=None,
                                        shared_loader_obj=None)
    calls = []

    def execute_module(module_name=None, module_args=None, task_vars=None, **kw):
        # One step_progress call a look: the job's status file (as async_wrapper wrote it) and the bytes.
        calls.append((module_name, dict(module_args)))
        status = statuses(clock.now) if callable(statuses) else statuses.pop(0)
        probe = {}
        if 'watch' in module_args:
            probe = dict(probes(clock.now) if callable(probes) else probes.pop(0))
        if probe.get('failed'):
            return probe
        if status is None or status.get('started') and not status.get('finished'):
            probe['job'] = 'running'
        else:
            probe.update(job='written', job_text=json.dumps(status))
        return probe

    plugin._execute_module = execute_module
    plugin._parse_returned_data = lambda res, profile: json.loads(res['stdout'])
    plugin._remote_expand_user = lambda path, **kw: '/root/.ansible_async'
    plugin.get_shell_option = lambda name, default=None: default
    plugin._remove_tmp_path = lambda path, **kw: None
    plugin.clock = clock
    plugin.sleep = clock.sleep
    return plugin, calls


RUNNING = {'started': 1, 'finished': 0, 'ansible_job_id': 'j1'}


def test_a_foreground_result_is_returned_as_it_is():
    foreground = {'changed': True, 'mode_taken': 'full', 'duration_s': 0.2}
    plugin, calls = action(dict(job=foreground, label='database', watch=['/x']), [], [], Clock())
    result = plugin.run(task_vars={})
    assert result['mode_taken'] == 'full' and result['changed'] is True and calls == []


def until(t, done):
    """The job runs until ``t`` seconds after the clock's start, then answers ``done``."""
    return lambda now: dict(RUNNING) if now < 1000 + t else done


def test_a_line_an_interval_then_the_modules_own_result(monkeypatch):
    shown = []
    monkeypatch.setattr(wait_progress.display, 'display', lambda msg, *a, **kw: shown.append(msg))
    clock = Clock()
    done = {'started': 1, 'finished': 1, 'ansible_job_id': 'j1', 'results_file': '/root/.ansible_async/j1',
            'changed': True, 'mode_taken': 'delta', 'duration_s': 70.0}
    # Baseline 20 MiB (the older chain), then 1 MiB/s.
    plugin, calls = action(
        dict(job=dict(RUNNING), label='database', interval=30, watch=['/x/pgbackup'], estimate=100 * MIB),
        until(70, done), lambda now: {'bytes': int(20 * MIB + (now - 1000) * MIB), 'estimate_bytes': 0}, clock)
    result = plugin.run(task_vars=dict(inventory_hostname='alation-prod-1'))
    # The job is looked at after 1, 3, 7, 15 s, then every 10 s; a line once 30 s have passed since the last.
    assert shown == ['alation-prod-1: database 35.0 MiB of ~100.0 MiB (35%), 1.0 MiB/s, ~1m05s left',
                     'alation-prod-1: database 65.0 MiB of ~100.0 MiB (65%), 1.0 MiB/s, ~35s left']
    assert result['mode_taken'] == 'delta' and result['changed'] is True and not result.get('failed')
    assert 'results_file' not in result and 'finished' not in result
    assert result['progress'] == dict(bytes=65 * MIB, estimate_bytes=100 * MIB, polls=11)
    # One call a look, which also reads the job's status file (step_progress removes it once finished).
    assert {name for name, dummy in calls} == {'alation.backup.step_progress'}
    assert all(a['job_id'] == 'j1' and a['async_dir'] == '/root/.ansible_async' for dummy, a in calls)
    # The estimate was given: PGDATA is not measured again.
    assert 'estimate_paths' not in calls[0][1]


def test_a_short_step_costs_seconds_not_an_interval(monkeypatch):
    monkeypatch.setattr(wait_progress.display, 'display', lambda msg, *a, **kw: None)
    clock = Clock()
    done = {'finished': 1, 'ansible_job_id': 'j1', 'changed': True}
    plugin, dummy = action(dict(job=dict(RUNNING), label='archive', interval=30, watch=['/x']),
                           until(2, done), lambda now: {'bytes': 0}, clock)
    plugin.run(task_vars={})
    assert clock.now - 1000 == 3, 'done after 2 s, seen at 3 s'


def test_the_job_failing_fails_the_task_with_its_message(monkeypatch):
    monkeypatch.setattr(wait_progress.display, 'display', lambda msg, *a, **kw: None)
    failed = {'started': 1, 'finished': 1, 'ansible_job_id': 'j1', 'failed': True, 'msg': 'cannot connect to PostgreSQL'}
    plugin, dummy = action(dict(job=dict(RUNNING), label='database', watch=['/x']), [failed], [{'bytes': 0}], Clock())
    result = plugin.run(task_vars={})
    assert result['failed'] is True and result['msg'] == 'cannot connect to PostgreSQL'


def test_archive_progress_counts_from_zero_and_takes_the_sources_total(monkeypatch):
    shown = []
    monkeypatch.setattr(wait_progress.display, 'display', lambda msg, *a, **kw: shown.append(msg))
    done = {'finished': 1, 'ansible_job_id': 'j2', 'changed': True, 'path': '/d/a.tar.gz'}
    plugin, calls = action(
        dict(job=dict(RUNNING, ansible_job_id='j2'), label='archive', interval=2, archive_dest='/d', archive_sources=['/s1', '/s2']),
        until(5, done), lambda now: {'bytes': int((now - 1000 + 1) * 2 * MIB), 'estimate_bytes': 40 * MIB, 'writer_pid': 7},
        Clock())
    result = plugin.run(task_vars=dict(inventory_hostname='h'))
    assert shown == ['h: archive 8.0 MiB of ~40.0 MiB (20%), 2.0 MiB/s, ~16s left']
    assert calls[0][1]['archive_sources'] == ['/s1', '/s2'] and result['path'] == '/d/a.tar.gz'


def test_a_look_that_fails_costs_only_that_look(monkeypatch):
    shown = []
    monkeypatch.setattr(wait_progress.display, 'display', lambda msg, *a, **kw: shown.append(msg))
    done = {'finished': 1, 'ansible_job_id': 'j3', 'changed': False}
    plugin, dummy = action(dict(job=dict(RUNNING, ansible_job_id='j3'), label='database', interval=5, watch=['/x']),
                           until(8, done), [{'failed': True, 'msg': 'no'}] + [{'bytes': 10}] * 5, Clock())
    assert plugin.run(task_vars=dict(inventory_hostname='h'))['changed'] is False
    assert shown == ['h: database 0 B, 0 B/s']


def test_a_host_that_cannot_be_looked_at_three_times_in_a_row_fails_the_task(monkeypatch):
    monkeypatch.setattr(wait_progress.display, 'display', lambda msg, *a, **kw: None)
    plugin, dummy = action(dict(job=dict(RUNNING, ansible_job_id='j5'), label='database', watch=['/x']),
                           until(1000, None), lambda now: {'failed': True, 'msg': 'ssh: connection reset'}, Clock())
    result = plugin.run(task_vars={})
    assert result['failed'] is True and 'could not be looked at 3 times in a row: ssh: connection reset' in result['msg']


def test_each_look_leaves_the_poll_mark_and_looks_often_enough_for_the_controller_timeout(monkeypatch):
    monkeypatch.setattr(wait_progress.display, 'display', lambda msg, *a, **kw: None)
    clock = Clock()
    done = {'finished': 1, 'ansible_job_id': 'j6', 'changed': True}
    plugin, calls = action(dict(job=dict(RUNNING, ansible_job_id='j6'), label='database', interval=30, watch=['/x'],
                                controller_mark='/d/.alation_backup.lock.poll', controller_timeout=6),
                           until(60, done), lambda now: {'bytes': 0}, clock)
    looks = []
    execute = plugin._execute_module
    plugin._execute_module = lambda **kw: looks.append(clock.now) or execute(**kw)
    plugin.run(task_vars={})
    assert all(a['controller_mark'] == '/d/.alation_backup.lock.poll' for dummy, a in calls)
    # 6 s without a poll stops the step: a look every 2 s at most.
    assert max(b - a for a, b in zip(looks, looks[1:])) <= 2


def test_timeout_gives_up_and_says_the_job_runs_on(monkeypatch):
    monkeypatch.setattr(wait_progress.display, 'display', lambda msg, *a, **kw: None)
    plugin, dummy = action(dict(job=dict(RUNNING, ansible_job_id='j4'), label='archive', interval=10, timeout=15, watch=['/x']),
                           until(1000, None), lambda now: {'bytes': 0}, Clock())
    result = plugin.run(task_vars={})
    assert result['failed'] is True and 'still running after 15s' in result['msg']


@pytest.mark.parametrize('args', [dict(label='x'), dict(job=dict(RUNNING), label='x', interval='soon')])
def test_bad_arguments_are_refused(args):
    plugin, dummy = action(args, [], [], Clock())
    with pytest.raises(Exception):
        plugin.run(task_vars={})


def test_a_slow_look_does_not_stretch_the_silence_the_step_measures(monkeypatch):
    monkeypatch.setattr(wait_progress.display, 'display', lambda msg, *a, **kw: None)
    clock = Clock()
    done = {'finished': 1, 'ansible_job_id': 'j7', 'changed': True}
    plugin, dummy = action(dict(job=dict(RUNNING, ansible_job_id='j7'), label='database', interval=30, watch=['/x'],
                                controller_mark='/d/m', controller_timeout=6),
                           until(60, done), lambda now: {'bytes': 0}, clock)
    starts = []
    execute = plugin._execute_module

    def slow(**kw):
        starts.append(clock.now)
        clock.now += 1.5  # each look takes 1.5 s on a loaded host
        return execute(**kw)

    plugin._execute_module = slow
    plugin.run(task_vars={})
    assert max(b - a for a, b in zip(starts, starts[1:])) <= 2
