# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run's summary on the controller: every host's record, AWX job stats, the report file. See the module's docs."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type  # pylint: disable=invalid-name

import errno
import json
import os
import re
import tempfile
import time

from ansible.module_utils.common.text.converters import to_native, to_text
from ansible.module_utils.six.moves.urllib import request as urllib_request
from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.six.moves.urllib.parse import urlparse
from ansible.plugins.action import ActionBase

from ansible_collections.alation.backup.plugins.filter.report import report_is_directory, report_path_problem, run_records, summary_line

ARGUMENT_SPEC = dict(
    hosts=dict(type='list', elements='str'),
    record_var=dict(type='str', default='alation_backup_result'),
    started_var=dict(type='str', default='__alation_backup_started'),
    stats_key=dict(type='str', default='alation_backup'),
    report_path=dict(type='path'),
    report_keep=dict(type='int', default=30),
    # The webhook's URL is a secret: it never travels as an argument (the task's invocation, -vvv, the callback's
    # logs would show it); the action reads the variable of this name from the task's variables and templates it.
    notify_url_var=dict(type='str', default='alation_backup_notify_url'),
    notify_on=dict(type='str', default='failure', choices=['failure', 'always']),
    notify_timeout=dict(type='float', default=10.0),
)

# A host's record counts as a failure of the run when its result is one of these, or its off-host copy failed
# (the local archive stands, but the copy that should survive the host is missing).
FAILED_RESULTS = ('failed', 'unreachable', 'not run')
REDACTED = '<alation_backup_notify_url>'


# A run's report in a directory of reports: alation-backup-<the controller's UTC time>.json (-<n> when that second
# already has one). Retention removes files of this name only; latest.json is a symlink to the newest run's.
REPORT_NAME = re.compile(r'^alation-backup-[0-9]{8}T[0-9]{6}Z(-[0-9]+)?\.json$')
LATEST = 'latest.json'


def _write_temp(directory, prefix, records):
    """The records as JSON in a new 0600 temporary file in ``directory``: its path."""
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=directory)
    try:
        with os.fdopen(fd, 'w') as f:
            json.dump(records, f, indent=4, sort_keys=True)
            f.write('\n')
        os.chmod(tmp, 0o600)
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def write_report(path, records, keep=30, now=None):
    """The records as JSON at ``path``, 0600, whole or not at all (a temporary file renamed or linked in).

    ``path`` a directory (or ending with '/'): a new file there for this run, ``latest.json`` pointed at it, and
    the oldest run files beyond ``keep`` removed (0 keeps all). Returns (the file written, the files removed,
    warnings)."""
    if not report_is_directory(path):
        tmp = _write_temp(os.path.dirname(path) or '.', '.%s.' % os.path.basename(path), records)
        try:
            os.rename(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
        return path, [], []
    directory = path.rstrip('/') or '/'
    stamp = time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(time.time() if now is None else now))
    tmp = _write_temp(directory, '.alation-backup-', records)
    try:
        # A hard link never replaces a file: a report of the same second gets the next free suffix.
        for n in range(1000):
            name = 'alation-backup-%s%s.json' % (stamp, '-%d' % n if n else '')
            try:
                os.link(tmp, os.path.join(directory, name))
                break
            except OSError as e:
                if e.errno != errno.EEXIST:
                    raise
        else:
            raise OSError(errno.EEXIST, 'every report name of %s is taken' % stamp)
    finally:
        os.unlink(tmp)
    written = os.path.join(directory, name)
    warnings = []
    latest = os.path.join(directory, LATEST)
    if os.path.lexists(latest) and not os.path.islink(latest):
        warnings.append('%s is not a symlink: left as it is, not pointed at %s' % (latest, name))
    else:
        link = os.path.join(directory, '.%s.%d' % (LATEST, os.getpid()))
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(name, link)
        try:
            os.rename(link, latest)
        except BaseException:
            os.unlink(link)
            raise
    return written, prune_reports(directory, keep, name), warnings


def _report_order(name):
    """alation-backup-<stamp>[-<n>].json -> (stamp, n): the order the runs wrote them in."""
    stem = name[len('alation-backup-'):-len('.json')]
    stamp, dummy, n = stem.partition('-')
    return stamp, int(n or 0)


def prune_reports(directory, keep, current):
    """Remove the oldest run reports (by name) in ``directory`` beyond the newest ``keep`` (0 keeps all); never
    ``current``, a symlink, nor a file of another name. The paths removed."""
    if keep <= 0:
        return []
    names = sorted((n for n in os.listdir(directory) if REPORT_NAME.match(n) and n != current
                    and os.path.isfile(os.path.join(directory, n)) and not os.path.islink(os.path.join(directory, n))),
                   key=_report_order)
    removed = []
    for name in names[:max(0, len(names) - (keep - 1))]:
        full = os.path.join(directory, name)
        try:
            os.unlink(full)
            removed.append(full)
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise
    return removed


def failed_hosts(records):
    """The hosts whose record says the run failed them: failed, unreachable, not run, or the off-host copy failed."""
    out = []
    for r in records:
        copy = r.get('copy') if isinstance(r.get('copy'), dict) else {}
        if r.get('result') in FAILED_RESULTS or copy.get('result') == 'failed':
            out.append(r.get('host', '?'))
    return out


def notification_body(records, lines, check_mode=False):
    """The POST's JSON: every host's record, and a ``text`` that Slack and Teams incoming webhooks show as is."""
    failed = failed_hosts(records)
    headline = ('Alation backup %s: %s' % ('check' if check_mode else 'run',
                                           'FAILED on %d of %d hosts (%s)' % (len(failed), len(records), ', '.join(failed))
                                           if failed else 'OK on all %d hosts' % len(records)))
    return dict(text='\n'.join([headline] + list(lines)), result='failed' if failed else 'ok', failed_hosts=failed,
                check_mode=bool(check_mode), lines=list(lines), records=records, source='alation.backup')


def redact(text, url):
    """``text`` without the URL, nor its path and query (a Slack or Teams webhook's secret part)."""
    text = to_text(text)
    parts = urlparse(url)
    secrets = [url] + [p for p in (parts.path + ('?' + parts.query if parts.query else ''), parts.path, parts.query) if len(p) > 1]
    for secret in sorted(set(secrets), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


class _NoRedirect(urllib_request.HTTPRedirectHandler):
    """A redirect is an answer like any other non-2xx one: never follow it (urllib would resend as a GET elsewhere)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # pylint: disable=too-many-arguments
        return None


def post_json(url, body, timeout):
    """POST ``body`` as JSON to ``url``: (HTTP status, '') on a 2xx answer, else (status or 0, why), never raising.
    The reason never holds the URL."""
    if not url.lower().startswith(('http://', 'https://')):
        return 0, 'the notify URL is not an http:// or https:// URL (alation_backup_notify_url)'
    data = json.dumps(body, sort_keys=True).encode('utf-8')
    req = urllib_request.Request(url, data=data, method='POST',
                                 headers={'Content-Type': 'application/json', 'User-Agent': 'alation.backup'})
    opener = urllib_request.build_opener(_NoRedirect())
    try:
        resp = opener.open(req, timeout=timeout)
        try:
            status = resp.getcode()
        finally:
            resp.close()
    except HTTPError as e:
        return e.code, 'the webhook answered HTTP %s %s' % (e.code, redact(e.reason, url))
    except URLError as e:
        return 0, 'the webhook could not be reached: %s' % redact(to_native(e.reason), url)
    except Exception as e:  # pylint: disable=broad-except
        # A timeout while reading the answer (socket.timeout), a connection reset, a bad port in the URL...
        return 0, 'the webhook could not be reached: %s' % redact('%s: %s' % (type(e).__name__, to_native(e)), url)
    if not 200 <= status < 300:
        return status, 'the webhook answered HTTP %s' % status
    return status, ''


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp  # tmp no longer has any effect
        task_vars = task_vars or {}
        dummy, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        hosts = args['hosts'] if args['hosts'] is not None else task_vars.get('ansible_play_hosts_all', [])
        hostvars = task_vars.get('hostvars', {})
        own, started = [], []
        for host in hosts:
            hv = hostvars.get(host, {})
            own.append(hv.get(args['record_var']) or {})
            started.append(hv.get(args['started_var']) or '')
        check_mode = bool(task_vars.get('ansible_check_mode'))
        records = run_records(own, hosts, started, check_mode)
        lines = [summary_line(r) for r in records]
        notification = self._notify(task_vars, args, records, lines, check_mode)
        # Each record says what became of the run's notification (the body sent had not known yet): a copy, so
        # the hosts' own facts stay as they were.
        records = [dict(r, notification=notification) for r in records]
        result.update(changed=False, records=records, lines=lines, notification=notification,
                      # What set_stats would publish: AWX shows it as the job's stats (artifacts).
                      ansible_stats=dict(data={args['stats_key']: dict((r['host'], r) for r in records)},
                                         per_host=False, aggregate=True))
        path = args['report_path']
        if path:
            # Preflight refused every host already when the path could not be written; failing here too would
            # hide the summary lines. The records are still in the job stats and the lines.
            problem = report_path_problem(path)
            if not problem and args['report_keep'] < 0:
                problem = 'report_keep must be 0 (keep every report) or more, not %d' % args['report_keep']
            if not problem:
                try:
                    written, removed, warnings = write_report(path, records, args['report_keep'])
                    result['report_path'] = written
                    if report_is_directory(path):
                        result['report_removed'] = removed
                    for warning in warnings:
                        result.setdefault('warnings', []).append(warning)
                except (IOError, OSError) as e:
                    problem = 'could not write the report %s: %s' % (path, to_text(e))
            if problem:
                result['report_error'] = problem
                result.setdefault('warnings', []).append(problem)
        if notification['result'] == 'failed':
            result.setdefault('warnings', []).append('the run\'s notification was not delivered (the backup stands): %s'
                                                     % notification['error'])
        return result

    def _notify(self, task_vars, args, records, lines, check_mode):
        """POST the run's summary to the webhook when asked: what became of it, never the URL, never raising."""
        name = args['notify_url_var']
        url = task_vars.get(name)
        if url and self._templar is not None:
            url = self._templar.template(url)
        url = to_text(url or '').strip()
        out = dict(result='off', on=args['notify_on'], status=0, error='')
        if not url:
            return out
        failed = failed_hosts(records)
        if args['notify_on'] == 'failure' and not failed:
            out['result'] = 'not needed'
            return out
        if check_mode:
            out['result'] = 'skipped'
            out['error'] = 'check mode sends no notification'
            return out
        if args['notify_timeout'] <= 0:
            out.update(result='failed', error='notify_timeout must be more than 0 seconds, not %s' % args['notify_timeout'])
            return out
        out['status'], out['error'] = post_json(url, notification_body(records, lines, check_mode), args['notify_timeout'])
        out['result'] = 'failed' if out['error'] else 'sent'
        return out
