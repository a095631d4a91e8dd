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

# A look waits on the host this long at most unless look_max says otherwise: the connection carries nothing
# meanwhile, and 30 s of silence is well within the idle timeouts of firewalls and NATs on an SSH path.
LOOK_MAX = 30
# Looks in a row that fail (the host unreachable a moment) before the task fails.
POLL_FAILURES = 3
# After a look that failed, the next one starts this long after it (a look's cap permitting).
RETRY_S = 5

ARGUMENT_SPEC = dict(
    job=dict(type='dict', required=True),
    label=dict(type='str', required=True),
    interval=dict(type='int', default=30),
    timeout=dict(type='int', default=0),
    watch=dict(type='list', elements='path', default=[]),
    storage_dir=dict(type='path', aliases=['archive_dest']),
    archive_sources=dict(type='list', elements='path', default=[]),
    estimate=dict(type='int', default=0),
    estimate_paths=dict(type='list', elements='path', default=[]),
    controller_mark=dict(type='path'),
    controller_timeout=dict(type='int', default=0),
    look_max=dict(type='int', default=LOOK_MAX),
)


def look_cap(look_max, controller_timeout):
    """The longest look: ``look_max``, and a third of ``controller_timeout`` (the step stops itself once its mark
    was silent that long; a look leaves the mark when it starts and when it ends)."""
    cap = float(look_max)
    if controller_timeout:
        cap = min(cap, max(1.0, controller_timeout / 3.0))
    return cap


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
        if args['look_max'] < 1:
            result.update(failed=True, msg='look_max must be 1 second or more, got %d: give the seconds one look may '
                          'wait on the host (30 by default)' % args['look_max'])
            return result
        jid = job['ansible_job_id']
        host = task_vars.get('inventory_hostname', '?')
        async_dir = self._remote_expand_user(self.get_shell_option('async_dir', default='~/.ansible_async'))
        interval = max(1, args['interval'])
        cap = look_cap(args['look_max'], args['controller_timeout'])
        try:
            # The archive's bytes count from 0; a watched dir grows from what it held.
            tracker = Tracker(args['estimate'], baseline=0 if args['storage_dir'] else None)
            started = self.clock()
            deadline = started + args['timeout'] if args['timeout'] else None
            # Each look is one call on the host that waits there until the step finishes (seen within 0.2 s), or
            # until the next progress line is due, or for the cap: so a short step costs one call, a long one one
            # call an interval. The first look measures the baseline before it waits; a look ending when a line is
            # due measures after it.
            due, looks, failures, first = None, 0, 0, True
            while True:
                looked = self.clock()
                if first:
                    due = looked + interval  # the first line an interval after the baseline, whenever it is measured
                to_line = due - looked
                wait = max(0.0, min(cap, to_line, deadline - looked if deadline is not None else cap))
                line = wait >= to_line  # this look ends when the line is due (wait is to_line itself then)
                measure = (['start'] if first else []) + (['end'] if line else [])
                found = self._poll(args, task_vars, jid, async_dir, wait, measure, estimate=first)
                looks += 1
                if found.get('failed'):
                    failures += 1
                    display.vvv('%s: job %s not looked at: %s' % (args['label'], jid, found.get('msg')))
                    if failures >= POLL_FAILURES:
                        hint = ''
                        if wait > RETRY_S:  # a connection that cuts a silent command would fail every long look
                            hint = (' (a look waits on the host up to %ds, silent: if the connection cuts commands '
                                    'that long, give a lower look_max)' % round(wait))
                        result.update(failed=True, ansible_job_id=jid, msg='%s: job %s could not be looked at %d times '
                                      'in a row: %s%s' % (args['label'], jid, failures, found.get('msg'), hint))
                        return result
                    rest = min(RETRY_S, cap)
                else:
                    failures = 0
                    status = self._status(found, jid)
                    if status.get('finished') or status.get('failed'):
                        break
                    if first:
                        first = False
                        if not tracker.estimate:
                            tracker.estimate = int(found.get('estimate_bytes') or 0)
                        # Measured on the host a wait before the look came back (the rate must not count the trip).
                        self._sample(tracker, max(looked, self.clock() - wait), found.get('start_bytes'))
                    if line:
                        self._sample(tracker, self.clock(), found.get('bytes'))
                        display.display(tracker.line(host, args['label']))
                        due += interval
                        if due <= self.clock():  # a look that took longer than an interval: no lines in a burst
                            due = self.clock() + interval
                    rest = wait  # a look that came back early (it should not) does not make the next one come sooner
                if deadline is not None and self.clock() >= deadline:
                    after = ('with no more looks it stops itself within %ds' % args['controller_timeout']
                             if args['controller_timeout'] and args['controller_mark'] else 'it runs on; look on the host')
                    result.update(failed=True, ansible_job_id=jid, msg='%s: job %s still running after %ds (timeout): %s'
                                  % (args['label'], jid, args['timeout'], after))
                    return result
                self.sleep(max(0.0, rest - (self.clock() - looked)))
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        for key in ('started', 'finished', 'results_file'):
            status.pop(key, None)
        result.update(status)
        result['progress'] = dict(bytes=tracker.last[1] if tracker.last else 0, estimate_bytes=tracker.estimate,
                                  polls=looks)
        return result

    def _poll(self, args, task_vars, jid, async_dir, wait, measure, estimate):
        """One call on the host: it waits up to ``wait`` s for the job (its status file, removed once the job
        finished), leaves the poll mark, and measures the bytes when ``measure`` says."""
        probe = dict(job_id=jid, async_dir=async_dir, wait=round(wait, 3), measure=measure)
        if args['controller_mark']:
            probe['controller_mark'] = args['controller_mark']
        if measure:
            probe['watch'] = args['watch']
            if args['storage_dir']:
                probe.update(storage_dir=args['storage_dir'], archive_sources=args['archive_sources'])
            if estimate and not args['estimate']:
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

    @staticmethod
    def _sample(tracker, when, measured):
        """One sample into ``tracker`` (None: the archive writer between two files, or not started yet)."""
        if measured is not None or tracker.last is None:
            tracker.add(when, measured or 0)
