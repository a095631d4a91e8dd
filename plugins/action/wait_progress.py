# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Wait for a background (async) step, print its progress, return its result. See the module's docs."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type  # pylint: disable=invalid-name

import inspect
import time

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display
from ansible.vars.clean import remove_internal_keys

from ansible_collections.alation.backup.plugins.module_utils._progress import Tracker

display = Display()
PARSE_TAKES_PROFILE = len(inspect.signature(ActionBase._parse_returned_data).parameters) > 2

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
    controller_mark=dict(type='path'),
    controller_timeout=dict(type='int', default=0),
)


# The longest wait between two looks at the job: a finished step is noticed within this.
CHECK_MAX = 10
# Looks in a row that fail (the host unreachable a moment) before the task fails.
POLL_FAILURES = 3


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
        # The step stops once no poll came for controller_timeout s: look at it three times as often at least.
        gap = min(interval, CHECK_MAX, max(1.0, args['controller_timeout'] / 3.0) if args['controller_timeout'] else CHECK_MAX)
        try:
            # The archive's bytes count from 0; a watched dir grows from what it held.
            tracker = Tracker(args['estimate'], baseline=0 if args['archive_dest'] else None)
            started = self.clock()
            polls, failures = 0, 0
            # A short step must not cost a whole interval: look at the job after 1 s, 2 s, 4 s ... then every
            # CHECK_MAX s at most, and print a progress line once an interval has passed since the last one.
            # Each look is one call on the host: the job's status, the poll mark, and the bytes when a line is due.
            check, printed = 1.0, None
            while True:
                due = printed is None or self.clock() - printed >= interval
                looked = self.clock()
                found = self._poll(args, task_vars, jid, async_dir, measure=due, first=printed is None)
                polls += 1
                if found.get('failed'):
                    failures += 1
                    display.vvv('%s: job %s not looked at: %s' % (args['label'], jid, found.get('msg')))
                    if failures >= POLL_FAILURES:
                        result.update(failed=True, ansible_job_id=jid, msg='%s: job %s could not be looked at %d times '
                                      'in a row: %s' % (args['label'], jid, failures, found.get('msg')))
                        return result
                else:
                    failures = 0
                    status = self._status(found, jid)
                    if status.get('finished') or status.get('failed'):
                        break
                    if due:
                        self._measure(tracker, found, first=printed is None)
                        if printed is not None:
                            display.display(tracker.line(host, args['label']))
                        printed = self.clock()
                if args['timeout'] and self.clock() - started > args['timeout']:
                    after = ('with no more looks it stops itself within %ds' % args['controller_timeout']
                             if args['controller_timeout'] and args['controller_mark'] else 'it runs on; look on the host')
                    result.update(failed=True, ansible_job_id=jid, msg='%s: job %s still running after %ds (timeout): %s'
                                  % (args['label'], jid, args['timeout'], after))
                    return result
                # From the start of one look to the next: a slow look must not stretch the silence the step measures.
                self.sleep(max(0.0, min(check, gap) - (self.clock() - looked)))
                check = min(check * 2, CHECK_MAX)
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        for key in ('started', 'finished', 'results_file'):
            status.pop(key, None)
        result.update(status)
        result['progress'] = dict(bytes=tracker.last[1] if tracker.last else 0, estimate_bytes=tracker.estimate,
                                  polls=polls)
        return result

    def _poll(self, args, task_vars, jid, async_dir, measure, first):
        """One call on the host: the job's status file (removed once the job finished), the poll mark, the bytes."""
        probe = dict(job_id=jid, async_dir=async_dir)
        if args['controller_mark']:
            probe['controller_mark'] = args['controller_mark']
        if measure:
            probe['watch'] = args['watch']
            if args['archive_dest']:
                probe.update(archive_dest=args['archive_dest'], archive_sources=args['archive_sources'])
            if first and not args['estimate']:
                probe['estimate_paths'] = args['estimate_paths']
        return self._execute_module(module_name='alation.backup.step_progress', module_args=probe, task_vars=task_vars)

    def _status(self, found, jid):
        """The job's status as async_status would give it."""
        if found.get('job') == 'missing':
            return dict(failed=True, msg='could not find job', ansible_job_id=jid, started=True, finished=True)
        if found.get('job') != 'written':
            return dict(started=True, finished=False, ansible_job_id=jid)
        # The file holds the module's own output (a legacy-profile module's JSON): parsed as Ansible parses it.
        res = dict(stdout=found.get('job_text') or '')
        # ansible-core 2.19 parses by a profile; 2.16 to 2.18 take none.
        status = self._parse_returned_data(res, 'legacy') if PARSE_TAKES_PROFILE else self._parse_returned_data(res)
        status.pop('_ansible_parsed', None)
        remove_internal_keys(status)
        if 'started' not in status:
            status.update(finished=True, ansible_job_id=jid)
        elif 'finished' not in status:
            status['finished'] = False
        status['started'], status['finished'] = bool(status['started'] if 'started' in status else True), \
            bool(status['finished'])
        return status

    def _measure(self, tracker, found, first=False):
        """One sample into ``tracker``."""
        if first and not tracker.estimate:
            tracker.estimate = int(found.get('estimate_bytes') or 0)
        if found.get('bytes') is not None or tracker.last is None:
            tracker.add(self.clock(), found.get('bytes') or 0)
