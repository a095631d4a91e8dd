# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run's summary: a record for every host of the play, and one line a host a person reads."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type  # pylint: disable=invalid-name

import re

from ansible_collections.alation.backup.plugins.module_utils._host import human
from ansible_collections.alation.backup.plugins.module_utils._progress import human_duration

# The longest error a summary line shows; the record and the failing task keep all of it.
ERROR_CHARS = 300

LOST = ('the connection was lost during the run (the role started, no record came back); '
        'its host lock frees itself once the lease goes stale')
NEVER = ('the role never ran here: Ansible dropped the host from the play before it '
         '(unreachable, or an earlier task such as fact gathering failed)')


def run_records(records, hosts, started=None, check_mode=False):
    """One record per host of ``hosts``, in order: its own, else one saying why it has none.

    ``records`` and ``started`` run along ``hosts``: each host's record (``{}``
    or None when it never reported) and when its run started (empty when it
    never started). A host that started and then vanished was lost to
    Ansible (unreachable); one that never started was not run.
    """
    records = list(records or [])
    started = list(started or [])
    out = []
    for i, host in enumerate(hosts):
        record = records[i] if i < len(records) else None
        if isinstance(record, dict) and record:
            out.append(record)
            continue
        began = i < len(started) and started[i] not in (None, '')
        out.append(dict(host=host, result='unreachable' if began else 'not run', error=LOST if began else NEVER,
                        skipped_reason='', check_mode=bool(check_mode), engine='', mode='', archive='',
                        archive_shell_path='', size=0, durations_s={}))
    return out


def _one_line(text, limit=ERROR_CHARS):
    text = re.sub(r'\s+', ' ', str(text or '')).strip()
    return text if len(text) <= limit else text[:limit - 3].rstrip() + '...'


def failed_step(error):
    """``'Database | Back up with pg_basebackup: cannot connect'`` -> ``('database', 'cannot connect')``."""
    head, sep, rest = str(error or '').partition(': ')
    if sep and ' | ' in head:
        return head.split(' | ')[0].strip().lower(), rest
    if sep and re.match(r'^[A-Za-z]+$', head):
        return head.lower(), rest
    return '', str(error or '')


def summary_line(record):
    """``alation-prod-1: OK DELTA 12.7 GiB in 14m02s -> /data2/backup/<archive>``, and its FAILED/SKIPPED/... kin;
    then the record's warnings, each as ``; WARNING: <text>``."""
    r = record or {}
    line = _result_line(r)
    for warning in r.get('warnings') or []:
        line += '; WARNING: %s' % _one_line(warning)
    return line


def _result_line(r):
    result = r.get('result', '')
    host = r.get('host', '?')
    if result == 'ok':
        words = ['CHECK' if r.get('check_mode') else 'OK']
        if r.get('mode'):
            words.append(r['mode'])
        if int(r.get('size') or 0):
            words.append(human(int(r['size'])))
        total = (r.get('durations_s') or {}).get('total')
        if total not in (None, ''):
            words.append('in ' + human_duration(float(total)))
        archive = r.get('archive_shell_path') or r.get('archive')
        if archive:
            words += ['->', archive]
        return '%s: %s' % (host, ' '.join(words))
    if result == 'skipped':
        return '%s: SKIPPED %s' % (host, _one_line(r.get('skipped_reason')))
    if result == 'failed':
        step, msg = failed_step(r.get('error'))
        return '%s: FAILED %s%s' % (host, (step + ': ') if step else '', _one_line(msg))
    # Unreachable, not run: the reason, without the task that met it.
    return '%s: %s %s' % (host, result.upper() or '?', _one_line(failed_step(r.get('error'))[1]))


class FilterModule(object):
    def filters(self):
        return dict(run_records=run_records, summary_line=summary_line)
