# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Wait for a background (async) step, print its progress, return its result. See the module's docs."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type  # pylint: disable=invalid-name

import time

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.alation.backup.plugins.module_utils._progress import Tracker

display = Display()

ARGUMENT_SPEC = dict(
    job=dict(type='dict', required=True),
    label=dict(type='str', required=True),
    interval=dict(type='int', default=30),
    timeout=dict(type='int', default=0),
    watch=dict(type='list', elements='path', default=[]),
    archive_dest=dict(type='path'),
    archive_sources=dict(type='list', elements='path', default=[]),
    estimate=dict(type='int', default=0),
    estimate_paths=dict(type='list', elements='path', default=[]),
)


# The longest wait between two looks at the job: a finished step is noticed within this.
CHECK_MAX = 10


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _requires_connection = True

    # Seams for the unit tests.
    clock = staticmethod(time.monotonic)
    sleep = staticmethod(time.sleep)

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp  # tmp no longer has any effect
        task_vars = task_vars or {}
        dummy, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        job = args['job']
        if not job.get('ansible_job_id') or job.get('finished'):
            # The task ran in the foreground (check mode, where ansible-core 2.16 refuses async): its result it is.
            result.update(job)
            return result
        jid = job['ansible_job_id']
        host = task_vars.get('inventory_hostname', '?')
        async_dir = self._remote_expand_user(self.get_shell_option('async_dir', default='~/.ansible_async'))
        interval = max(1, args['interval'])
        try:
            # The archive's bytes count from 0; a watched dir grows from what it held.
            tracker = Tracker(args['estimate'], baseline=0 if args['archive_dest'] else None)
            started = self.clock()
            self._measure(tracker, args, task_vars, first=True)
            polls = 0
            # A short step must not cost a whole interval: look at the job after 1 s, 2 s, 4 s ... then every
            # CHECK_MAX s at most, and print a progress line once an interval has passed since the last one.
            check, printed = 1.0, started
            while True:
                status = self._execute_module(module_name='ansible.legacy.async_status', task_vars=task_vars,
                                              module_args=dict(jid=jid, _async_dir=async_dir))
                polls += 1
                if status.get('finished') or status.get('failed'):
                    break
                if args['timeout'] and self.clock() - started > args['timeout']:
                    result.update(failed=True, ansible_job_id=jid,
                                  msg='%s: job %s still running after %ds (timeout): it runs on; look on the host'
                                      % (args['label'], jid, args['timeout']))
                    return result
                if self.clock() - printed >= interval:
                    self._measure(tracker, args, task_vars)
                    display.display(tracker.line(host, args['label']))
                    printed = self.clock()
                self.sleep(min(check, interval))
                check = min(check * 2, CHECK_MAX)
            # The job's status file holds the module's result (and the database password's absence): remove it.
            self._execute_module(module_name='ansible.legacy.async_status', task_vars=task_vars,
                                 module_args=dict(jid=jid, mode='cleanup', _async_dir=async_dir))
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        for key in ('started', 'finished', 'results_file'):
            status.pop(key, None)
        result.update(status)
        result['progress'] = dict(bytes=tracker.last[1] if tracker.last else 0, estimate_bytes=tracker.estimate,
                                  polls=polls)
        return result

    def _measure(self, tracker, args, task_vars, first=False):
        """One sample from the host into ``tracker``; a probe that fails only costs this line its numbers."""
        probe = dict(watch=args['watch'])
        if args['archive_dest']:
            probe.update(archive_dest=args['archive_dest'], archive_sources=args['archive_sources'])
        if first and not tracker.estimate:
            probe['estimate_paths'] = args['estimate_paths']
        found = self._execute_module(module_name='alation.backup.step_progress', module_args=probe,
                                     task_vars=task_vars)
        if found.get('failed'):
            display.vvv('%s: progress not measured: %s' % (args['label'], found.get('msg')))
            return
        if first and not tracker.estimate:
            tracker.estimate = int(found.get('estimate_bytes') or 0)
        if found.get('bytes') is not None or tracker.last is None:
            tracker.add(self.clock(), found.get('bytes') or 0)
