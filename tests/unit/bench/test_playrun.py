# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The benchmarks' counting (bench/playrun.py, bench/callback_plugins/bench_events.py): task entries, module CPU."""

import importlib.util
import json
import os
import subprocess
import sys
import time

import pytest

from ansible.inventory.host import Host
from ansible.playbook.task_include import TaskInclude

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))),
                     'bench')


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


playrun = _load('bench_playrun', os.path.join(BENCH, 'playrun.py'))
bench_events = _load('bench_events', os.path.join(BENCH, 'callback_plugins', 'bench_events.py'))


class Result(object):
    def __init__(self, task, host, **result):
        self._task, self._host, self._result = task, Host(host), result


class Included(object):
    def __init__(self, task, hosts):
        self._task, self._hosts = task, [Host(h) for h in hosts]


class FakeTask(object):
    """What the callback reads of a task."""
    count = 0

    def __init__(self, name, action, run_once=None):
        FakeTask.count += 1
        self.name, self.action, self.run_once, self.delegate_to = name, action, run_once, None
        self._uuid = 'task-%d' % FakeTask.count

    def get_name(self):
        return self.name


def task(name, action='ansible.builtin.debug', run_once=None):
    return FakeTask(name, action, run_once)


def run_callback(tmp_path, monkeypatch, feed):
    """Feed a bench_events callback, end the run; the events file as read back."""
    path = str(tmp_path / 'events.json')
    monkeypatch.setenv('ALATION_BENCH_EVENTS', path)
    cb = bench_events.CallbackModule()
    feed(cb)
    cb.v2_playbook_on_stats(None)
    with open(path) as f:
        return json.load(f)


def a_run(cb, hosts=('a', 'b')):
    """Two hosts: a module call each, a when-skipped task, an include that ran, a run_once summary on a only."""
    ping = task('Reach', 'ansible.builtin.ping')
    skip = task('Stop', 'ansible.builtin.fail')
    stage = TaskInclude.load(dict(name='Stage', include_tasks='stage.yml'))
    empty = task('Stage | Empty', 'alation.backup.staging_dir')
    summary = task('Summary | One line a host', run_once=True)
    for h in hosts:
        cb.v2_runner_on_ok(Result(ping, h))
    for h in hosts:
        cb.v2_runner_on_skipped(Result(skip, h, skipped=True))
    for h in hosts:
        # Ansible sends an ok for the include task itself, then the included file: one entry.
        cb.v2_runner_on_ok(Result(stage, h))
    cb.v2_playbook_on_include(Included(stage, hosts))
    for h in hosts:
        cb.v2_runner_on_ok(Result(empty, h, changed=h == 'a'))
    cb.v2_runner_on_ok(Result(summary, hosts[0]))


def test_an_include_is_one_entry_and_a_run_once_task_counts_for_every_host(tmp_path, monkeypatch):
    events = run_callback(tmp_path, monkeypatch, a_run)
    assert events['cpu_self'] > 0
    per_host = playrun.entries_per_host(events['entries'], ['a', 'b'])
    assert [e['task'] for e in per_host['b']] == ['Reach', 'Stop', 'Stage', 'Stage | Empty', 'Summary | One line a host']
    a, b = playrun.tally(per_host['a']), playrun.tally(per_host['b'])
    assert (a['total'], a['ok'], a['changed'], a['skipped'], a['include']) == (5, 3, 1, 1, 1)
    assert (b['total'], b['ok'], b['changed'], b['skipped'], b['include']) == (5, 3, 0, 1, 1)
    # ping and staging_dir call a module; debug (the summary) runs on the controller only.
    assert (b['module_calls'], b['controller_only']) == (2, 1)
    assert playrun.tally_text(b) == ('5 = 3 ok (0 changed), 1 skipped, 0 failed, 1 include; '
                                     'of the ok/failed: 2 module calls, 1 controller-only')


def test_a_task_on_the_controller_host_counts_for_every_host_once():
    events = [dict(kind='ok', host='a', task='Reach', action='ping', uuid='1', t=1),
              dict(kind='ok', host='localhost', task='Write the report', action='copy', uuid='2', t=2),
              dict(kind='ok', host='b', task='Reach', action='ping', uuid='1', t=1)]
    per_host = playrun.entries_per_host(events, ['a', 'b'])
    assert [e['task'] for e in per_host['a']] == ['Reach', 'Write the report']
    assert playrun.tally(per_host['b'])['total'] == 2


def test_a_run_once_task_that_ran_on_every_host_counts_once_for_each():
    # The free strategy runs a run_once task on every host: each host counts its own.
    events = [dict(kind='ok', host=h, task='Summary', action='debug', uuid='9', run_once=True, t=1) for h in 'ab']
    per_host = playrun.entries_per_host(events, ['a', 'b', 'c'])
    assert [len(per_host[h]) for h in 'abc'] == [1, 1, 1]


def test_hosts_that_differ_get_a_line_each():
    events = [dict(kind='ok', host='a', task='Reach', action='ping', uuid='1', t=1),
              dict(kind='ok', host='b', task='Reach', action='ping', uuid='1', t=1),
              dict(kind='skipped', host='b', task='Copy', action='copy', uuid='2', t=2)]
    play = playrun.Play(['a', 'b'], 1.0, 0, '', {}, dict(entries=events), 2.0, {})
    lines = play.entries_text()
    assert len(lines) == 3 and lines[1].endswith('[a]') and lines[2].startswith('  2 = 1 ok')


NOTES = '''sync 0
0m0.004s 0m0.002s
0m0.150s 0m0.030s
async 0
0m0.003s 0m0.001s
1m2.500s 0m0.500s
'''


def test_notes_parse_into_own_and_children_cpu(tmp_path):
    assert playrun.parse_notes(NOTES) == [('sync', pytest.approx(0.186)), ('async', pytest.approx(63.004))]
    (tmp_path / '123').write_text(NOTES)
    (tmp_path / '124').write_text(NOTES.split('async', maxsplit=1)[0])
    cpu = playrun.module_cpu(str(tmp_path))
    assert cpu == dict(sync=pytest.approx(0.372), sync_calls=2, async_cpu=pytest.approx(63.004), async_calls=1)
    assert playrun.module_cpu(str(tmp_path / 'none')) == dict(sync=0.0, sync_calls=0, async_cpu=0.0, async_calls=0)


def test_the_split_takes_only_the_modules_the_controller_reaped():
    modules = dict(a=dict(sync=1.0, sync_calls=10, async_cpu=30.0, async_calls=1),
                   b=dict(sync=3.0, sync_calls=14, async_cpu=50.0, async_calls=1))
    split = playrun.cpu_split(24.0, modules, ['a', 'b'])
    assert split['controller'] == 20.0 and split['per_host'] == 10.0 and split['modules_per_host'] == 2.0
    assert split['async_per_host'] == 40.0 and split['calls_per_host'] == 12 and split['share'] == pytest.approx(20 / 24)
    assert playrun.cpu_text(split, ['a', 'b'])[0].startswith('controller CPU per host: 10.00 s')


BURN = 'import sys; n = sum(range(3000000)); sys.stdout.write(sys.stdin.read() + repr(sys.argv[1:]))'


def test_the_wrapper_runs_the_real_python_and_notes_its_cpu_under_the_controller(tmp_path):
    notes = str(tmp_path / 'notes')
    wrapper = playrun.write_wrapper(str(tmp_path / 'python'), notes, sys.executable)
    p = subprocess.run([wrapper, '-c', BURN + '; sys.exit(3)', 'x y'], input='in:', stdout=subprocess.PIPE,
                       universal_newlines=True, check=False)
    assert (p.returncode, p.stdout) == (3, "in:['x y']")
    cpu = playrun.module_cpu(notes)
    assert cpu['sync_calls'] == 1 and cpu['async_calls'] == 0 and cpu['sync'] > 0.01


def test_a_module_its_daemon_left_behind_is_noted_as_async(tmp_path):
    # As async_wrapper does: the module's parent exits and it is reparented, away from the controller.
    notes = str(tmp_path / 'notes')
    wrapper = playrun.write_wrapper(str(tmp_path / 'python'), notes, sys.executable)
    subprocess.run(['bash', '-c', '( "$0" -c "import time; time.sleep(0.3)" </dev/null >/dev/null & )', wrapper],
                   check=True)
    deadline = time.time() + 30
    while not (os.path.isdir(notes) and os.listdir(notes)) and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(0.2)
    cpu = playrun.module_cpu(notes)
    assert cpu['async_calls'] == 1 and cpu['sync_calls'] == 0


def test_busy_cpu_counts_what_the_machine_spent_busy_and_the_floor_is_that_over_its_cpus():
    before = playrun.busy_cpu_seconds()
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:  # burn 0.3 s of this process' CPU: the machine was that busy at least
        pass
    assert playrun.busy_cpu_seconds() - before >= 0.25
    text = playrun.busy_text(30.0, 20.0, 2)
    assert text == ("the machine's CPUs across the run: 30.0 CPU s busy of 40.0 (2 CPUs x 20.0 s wall, 75%); "
                    'the same work needs at least 15.0 s of wall on 2 CPUs')
