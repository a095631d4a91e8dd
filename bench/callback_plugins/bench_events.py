# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The benchmarks' count of task entries: every task result and include, per host, as JSON.

Not part of the collection: the benchmarks enable it (ANSIBLE_CALLBACKS_ENABLED=bench_events,
ANSIBLE_CALLBACK_PLUGINS=bench/callback_plugins) and name the file in $ALATION_BENCH_EVENTS.
An entry is what ansible-playbook prints a line for: a task's result on a host (ok, changed,
failed, skipped, unreachable) or an included file. An ``include_tasks`` that runs is one entry
(its "included:" line), not two: Ansible also sends an ok result for it, which the default
callback does not print and this one does not count. At the end the file gets every entry (with
its task's uuid and run_once, so a reader can count a run_once task for every host), and the
controller's own CPU at that moment (this process and the workers it had reaped by then; the
benchmarks take the whole run's from the outside, bench/playrun.py).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type  # pylint: disable=invalid-name

import json
import os
import resource
import time

from ansible.playbook.task_include import TaskInclude
from ansible.plugins.callback import CallbackBase

DOCUMENTATION = '''
name: bench_events
type: aggregate
short_description: count task entries per host for the benchmarks
description: Writes every task entry per host to the file in $ALATION_BENCH_EVENTS.
'''


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'bench_events'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self.entries = []
        self.started = {}

    def _add(self, kind, host, task, extra=None):
        entry = dict(kind=kind, host=host, task=task.get_name(), action=task.action, uuid=task._uuid,
                     run_once=bool(task.run_once), t=time.time())
        entry.update(extra or {})
        self.entries.append(entry)

    def v2_playbook_on_task_start(self, task, is_conditional):
        self.started[task._uuid] = time.time()

    def _result(self, kind, result):
        t0 = self.started.get(result._task._uuid)
        self._add(kind, result._host.get_name(), result._task,
                  dict(changed=bool(result._result.get('changed')), delegated=bool(result._task.delegate_to),
                       since_start=(time.time() - t0) if t0 else None))

    def v2_runner_on_ok(self, result):
        # The included file's own event counts it (v2_playbook_on_include).
        if not isinstance(result._task, TaskInclude):
            self._result('ok', result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result('failed', result)

    def v2_runner_on_skipped(self, result):
        self._result('skipped', result)

    def v2_runner_on_unreachable(self, result):
        self._result('unreachable', result)

    def v2_playbook_on_include(self, included_file):
        for host in included_file._hosts:
            self._add('include', host.get_name(), included_file._task)

    def v2_playbook_on_stats(self, stats):
        path = os.environ.get('ALATION_BENCH_EVENTS')
        if not path:
            return
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        with open(path, 'w') as f:
            json.dump(dict(entries=self.entries, cpu_self=own.ru_utime + own.ru_stime,
                           cpu_children=kids.ru_utime + kids.ru_stime), f)
