# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""wait_progress: looks at the job (each look waits on the host), prints a progress line an interval, returns the
job's own result."""

import json
from unittest import mock

import pytest

from ansible.playbook.task import Task

from ansible_collections.alation.backup.plugins.action import wait_progress
from ansible_collections.alation.backup.plugins.module_utils._progress import JOB_LOOK_S

MIB = 1024 ** 2


class Clock(object):
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


class Host(object):
    """What the host did: the calls (module, args, when they started), the times the poll mark was left."""

    def __init__(self):
        self.calls, self.marks = [], []

    @property
    def looks(self):
        return len(self.calls)


def action(args, job, probes=lambda now: {'bytes': 0}, clock=None, failing=(), transport=0.0):
    """The action with a host whose job answers ``job(now)`` (its status, None while the file is half written)
    and whose measures answer ``probes(now)``. Each step_progress call is played as the module plays it: the
    mark left, the start measure, the job's status file looked at every JOB_LOOK_S until it finished or ``wait``
    passed, the mark left again, the end measure. Looks numbered in ``failing`` fail as a connection that
    drops; each call takes ``transport`` seconds there and back."""
    clock = clock or Clock()
    task = Task()
    task.args = args
    task.action = 'alation.backup.wait_progress'
    connection = mock.MagicMock()
    connection._shell.tmpdir = None
    plugin = wait_progress.ActionModule(task, connection, mock.MagicMock(), loader=None, templar=None,
                                        shared_loader_obj=None)
    host = Host()

    def execute_module(module_name=None, module_args=None, task_vars=None, **kw):
        a = dict(module_args)
        host.calls.append((module_name, a, clock.now))
        clock.now += transport / 2.0
        if len(host.calls) - 1 in failing:
            clock.now += transport / 2.0
            return {'failed': True, 'msg': 'ssh: connection reset'}
        found = {}
        if a.get('controller_mark'):
            host.marks.append(clock.now)
        if 'start' in a['measure']:
            measured = probes(clock.now)
            found.update(start_bytes=measured.get('bytes'), estimate_bytes=measured.get('estimate_bytes', 0))
        end = clock.now + a['wait']
        while True:
            status = job(clock.now)
            over = status is not None and not (status.get('started') and not status.get('finished'))
            if over or clock.now >= end - 1e-9:
                break
            clock.now = min(end, clock.now + JOB_LOOK_S)
        if status is None:
            found['job'] = 'running'
        else:
            found.update(job='written', job_text=json.dumps(status))
        if not over:
            if a.get('controller_mark'):
                host.marks.append(clock.now)
            if 'end' in a['measure']:
                measured = probes(clock.now)
                found.update(bytes=measured.get('bytes'), estimate_bytes=found.get('estimate_bytes') or
                             measured.get('estimate_bytes', 0))
        clock.now += transport / 2.0
        return found

    plugin._execute_module = execute_module
    plugin._parse_returned_data = lambda res, profile=None: json.loads(res['stdout'])  # 2.16 to 2.18 pass no profile
    plugin._remote_expand_user = lambda path, **kw: '/root/.ansible_async'
    plugin.get_shell_option = lambda name, default=None: default
    plugin._remove_tmp_path = lambda path, **kw: None
    plugin.clock = clock
    plugin.sleep = clock.sleep
    return plugin, host


RUNNING = {'started': 1, 'finished': 0, 'ansible_job_id': 'j1'}
DONE = {'finished': 1, 'ansible_job_id': 'j1', 'changed': True}


def until(t, done=None):
    """The job runs until ``t`` seconds after the clock's start, then answers ``done``."""
    return lambda now: dict(RUNNING) if now < 1000 + t - 1e-9 else dict(done or DONE)


@pytest.fixture
def shown(monkeypatch):
    """The progress lines printed, with the time each was."""
    lines = []
    monkeypatch.setattr(wait_progress.display, 'display', lambda msg, *a, **kw: lines.append(msg))
    return lines


def test_a_foreground_result_is_returned_as_it_is():
    foreground = {'changed': True, 'mode_taken': 'full', 'duration_s': 0.2}
    plugin, host = action(dict(job=foreground, label='database', watch=['/x']), None)
    result = plugin.run(task_vars={})
    assert result['mode_taken'] == 'full' and result['changed'] is True and host.looks == 0


def test_a_line_an_interval_then_the_modules_own_result(shown):
    clock = Clock()
    done = {'started': 1, 'finished': 1, 'ansible_job_id': 'j1', 'results_file': '/root/.ansible_async/j1',
            'changed': True, 'mode_taken': 'delta', 'duration_s': 70.0}
    # Baseline 20 MiB (the older chain), then 1 MiB/s.
    plugin, host = action(
        dict(job=dict(RUNNING), label='database', interval=30, watch=['/x/pgbackup'], estimate=100 * MIB),
        until(70, done), lambda now: {'bytes': int(20 * MIB + (now - 1000) * MIB), 'estimate_bytes': 0}, clock)
    result = plugin.run(task_vars=dict(inventory_hostname='alation-prod-1'))
    # A look from 0 to 30 s (the baseline before it, a line after), one to 60 s, one that sees the end at 70 s.
    assert shown == ['alation-prod-1: database 30.0 MiB of ~100.0 MiB (30%), 1.0 MiB/s, ~1m10s left',
                     'alation-prod-1: database 60.0 MiB of ~100.0 MiB (60%), 1.0 MiB/s, ~40s left']
    assert result['mode_taken'] == 'delta' and result['changed'] is True and not result.get('failed')
    assert 'results_file' not in result and 'finished' not in result
    assert result['progress'] == dict(bytes=60 * MIB, estimate_bytes=100 * MIB, polls=3)
    assert clock.now - 1000 == pytest.approx(70)
    # One call a look, which also reads the job's status file (step_progress removes it once finished).
    assert {name for name, dummy, dummy in host.calls} == {'alation.backup.step_progress'}
    assert all(a['job_id'] == 'j1' and a['async_dir'] == '/root/.ansible_async' for dummy, a, dummy in host.calls)
    assert [(a['wait'], a['measure']) for dummy, a, dummy in host.calls] == [
        (30, ['start', 'end']), (30, ['end']), (30, ['end'])]
    # The estimate was given: PGDATA is not measured again.
    assert 'estimate_paths' not in host.calls[0][1]


def test_a_short_step_costs_one_look_and_no_idle_wait(shown):
    clock = Clock()
    plugin, host = action(dict(job=dict(RUNNING), label='archive', interval=30, watch=['/x']), until(3), clock=clock)
    plugin.run(task_vars={})
    assert host.looks == 1 and shown == []
    assert clock.now - 1000 == pytest.approx(3), 'done after 3 s, seen at 3 s'


def test_a_step_finishing_during_a_look_is_seen_in_that_look(shown):
    clock = Clock()
    plugin, host = action(dict(job=dict(RUNNING), label='database', interval=30, watch=['/x']), until(30.3),
                          clock=clock)
    plugin.run(task_vars={})
    assert host.looks == 2 and [when - 1000 for dummy, dummy, when in host.calls] == [0, pytest.approx(30)]
    assert clock.now - 1000 == pytest.approx(30.4), 'finished 0.3 s into the second look, seen 0.1 s later'


def test_a_six_hour_step_costs_a_look_an_interval_and_its_lines_come_every_interval(monkeypatch):
    clock = Clock()
    lines = []
    monkeypatch.setattr(wait_progress.display, 'display', lambda msg, *a, **kw: lines.append((clock.now, msg)))
    hours6 = 6 * 3600
    # 50 GiB in 6 h; each call takes 0.4 s there and back.
    plugin, host = action(dict(job=dict(RUNNING), label='database', interval=30, watch=['/x'], estimate=50 * 1024 * MIB,
                               controller_mark='/d/.alation_backup.lock.poll', controller_timeout=180),
                          until(hours6 + 5), lambda now: {'bytes': int((now - 1000) * 50 * 1024 * MIB / hours6)},
                          clock, transport=0.4)
    result = plugin.run(task_vars=dict(inventory_hostname='h'))
    # Before: looks after 1, 2, 4, 8 s, then every 10 s: 2164 looks. Now one a line, and the first.
    assert host.looks <= hours6 // 30 + 2 and result['progress']['polls'] == host.looks
    assert len(lines) == hours6 // 30
    gaps = [b[0] - a[0] for a, b in zip(lines, lines[1:])]
    assert min(gaps) == pytest.approx(30) and max(gaps) == pytest.approx(30)
    assert lines[0][1] == 'h: database 71.1 MiB of ~50.0 GiB (0%), 2.4 MiB/s, ~5h59m left'
    assert clock.now - 1000 - (hours6 + 5) <= JOB_LOOK_S + 0.4, 'the end is seen at once'
    # The step sees the mark left at least every 30 s: far within its controller_timeout.
    assert max(b - a for a, b in zip(host.marks, host.marks[1:])) <= 30


def test_the_job_failing_fails_the_task_with_its_message(shown):
    failed = {'started': 1, 'finished': 1, 'ansible_job_id': 'j1', 'failed': True, 'msg': 'cannot connect to PostgreSQL'}
    plugin, dummy = action(dict(job=dict(RUNNING), label='database', watch=['/x']), until(4, failed))
    result = plugin.run(task_vars={})
    assert result['failed'] is True and result['msg'] == 'cannot connect to PostgreSQL'


def test_archive_progress_counts_from_zero_and_takes_the_sources_total(shown):
    done = {'finished': 1, 'ansible_job_id': 'j2', 'changed': True, 'path': '/d/a.tar.gz'}
    plugin, host = action(
        dict(job=dict(RUNNING, ansible_job_id='j2'), label='archive', interval=2, archive_dest='/d', archive_sources=['/s1', '/s2']),
        until(5, done), lambda now: {'bytes': int((now - 1000 + 1) * 2 * MIB), 'estimate_bytes': 40 * MIB, 'writer_pid': 7})
    result = plugin.run(task_vars=dict(inventory_hostname='h'))
    assert shown == ['h: archive 6.0 MiB of ~40.0 MiB (15%), 2.0 MiB/s, ~17s left',
                     'h: archive 10.0 MiB of ~40.0 MiB (25%), 2.0 MiB/s, ~15s left']
    assert host.calls[0][1]['archive_sources'] == ['/s1', '/s2'] and result['path'] == '/d/a.tar.gz'


def test_a_look_that_fails_costs_only_that_look(shown):
    clock = Clock()
    plugin, host = action(dict(job=dict(RUNNING, ansible_job_id='j3'), label='database', interval=5, watch=['/x']),
                          until(8, dict(DONE, changed=False)), lambda now: {'bytes': 10}, clock, failing={0})
    assert plugin.run(task_vars=dict(inventory_hostname='h'))['changed'] is False
    # The first look failed; the next, RETRY_S later, measured the baseline; the line at 10 s never came.
    assert [when - 1000 for dummy, dummy, when in host.calls] == [0, wait_progress.RETRY_S]
    assert host.calls[1][1]['measure'] == ['start', 'end']
    assert shown == [] and clock.now - 1000 == pytest.approx(8)


def test_a_host_that_cannot_be_looked_at_three_times_in_a_row_fails_the_task(shown):
    clock = Clock()
    plugin, host = action(dict(job=dict(RUNNING, ansible_job_id='j5'), label='database', watch=['/x']),
                          until(1000), clock=clock, failing={0, 1, 2})
    result = plugin.run(task_vars={})
    assert result['failed'] is True and result['msg'] == (
        'database: job j5 could not be looked at 3 times in a row: ssh: connection reset (a look waits on the host up '
        'to 30s, silent: if the connection cuts commands that long, give a lower look_max)')
    assert host.looks == 3 and clock.now - 1000 == pytest.approx(2 * wait_progress.RETRY_S)


def test_short_looks_that_fail_need_no_word_on_look_max(shown):
    plugin, host = action(dict(job=dict(RUNNING, ansible_job_id='j5'), label='database', watch=['/x'], look_max=5),
                          until(1000), failing={0, 1, 2})
    result = plugin.run(task_vars={})
    assert result['msg'] == 'database: job j5 could not be looked at 3 times in a row: ssh: connection reset'


@pytest.mark.parametrize('look_max, controller_timeout, interval, longest', [
    (30, 180, 300, 30),  # the default: 30 s
    (30, 0, 300, 30),  # no controller watch
    (30, 30, 300, 10),  # a third of the controller timeout
    (30, 2, 300, 1),  # never below 1 s
    (10, 180, 300, 10),  # a connection that wants shorter silences
    (30, 180, 7, 7),  # a line every 7 s
])
def test_a_look_waits_no_longer_than_look_max_a_third_of_the_controller_timeout_and_the_next_line(
        shown, look_max, controller_timeout, interval, longest):
    plugin, host = action(dict(job=dict(RUNNING), label='database', interval=interval, watch=['/x'], look_max=look_max,
                               controller_mark='/d/m', controller_timeout=controller_timeout), until(400))
    plugin.run(task_vars={})
    assert max(a['wait'] for dummy, a, dummy in host.calls) == pytest.approx(longest)


def test_each_look_leaves_the_poll_mark_and_the_step_never_sees_a_third_of_its_timeout_in_silence(shown):
    plugin, host = action(dict(job=dict(RUNNING, ansible_job_id='j6'), label='database', interval=30, watch=['/x'],
                               controller_mark='/d/.alation_backup.lock.poll', controller_timeout=6), until(60))
    plugin.run(task_vars={})
    assert all(a['controller_mark'] == '/d/.alation_backup.lock.poll' for dummy, a, dummy in host.calls)
    # 6 s without a poll stops the step: a look waits 2 s at most, and leaves the mark when it starts and ends.
    assert max(b - a for a, b in zip(host.marks, host.marks[1:])) <= 2
    assert host.looks == pytest.approx(60 / 2, abs=1)


def test_a_slow_look_does_not_stretch_the_silence_the_step_measures(shown):
    # Each call takes 1.5 s there and back on a loaded host.
    plugin, host = action(dict(job=dict(RUNNING, ansible_job_id='j7'), label='database', interval=30, watch=['/x'],
                               controller_mark='/d/m', controller_timeout=6), until(60), transport=1.5)
    plugin.run(task_vars={})
    assert max(b - a for a, b in zip(host.marks, host.marks[1:])) <= 2


def test_timeout_gives_up_and_says_the_job_runs_on(shown):
    clock = Clock()
    plugin, host = action(dict(job=dict(RUNNING, ansible_job_id='j4'), label='archive', interval=10, timeout=15, watch=['/x']),
                          until(1000), clock=clock)
    result = plugin.run(task_vars={})
    assert result['failed'] is True and 'still running after 15s' in result['msg']
    assert clock.now - 1000 == pytest.approx(15) and host.looks == 2


@pytest.mark.parametrize('args', [dict(label='x'), dict(job=dict(RUNNING), label='x', interval='soon')])
def test_bad_arguments_are_refused(args):
    plugin, dummy = action(args, until(1))
    with pytest.raises(Exception):
        plugin.run(task_vars={})


def test_a_look_max_below_a_second_is_refused_with_what_to_give():
    plugin, host = action(dict(job=dict(RUNNING), label='x', look_max=0), until(1))
    result = plugin.run(task_vars={})
    assert result['failed'] is True and result['msg'].startswith('look_max must be 1 second or more, got 0')
    assert host.looks == 0
