# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run's record: one per host from what its steps returned, one for every host of the play, and one line a
host a person reads."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type  # pylint: disable=invalid-name

import os
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


def _get(d, *keys, **kw):
    """d[k1][k2]... or ``default`` where a level is missing, None, or not a dict (a step that never ran)."""
    default = kw.get('default')
    for key in keys:
        if not isinstance(d, dict) or d.get(key) is None:
            return default
        d = d[key]
    return d


def _num(value):
    try:
        return float(value or 0)
    except (TypeError, ValueError):
        return 0.0


DRILL_SKIPPED = 'the scheduled drill was skipped: '


def drill_verdict(drill, lock, settings, check_mode=False):
    """The scheduled drill's part of the record: result ok, failed, skipped, off or not due; reason, archive,
    duration_s, at. ``drill`` is what the drill step recorded ({} when it did not run)."""
    if isinstance(drill, dict) and drill.get('result'):
        return dict(result=drill['result'], reason=str(drill.get('reason') or ''), archive=str(drill.get('archive') or ''),
                    duration_s=round(_num(drill.get('duration_s')), 2), at=str(drill.get('at') or ''))
    out = dict(result='off', reason='', archive='', duration_s=0, at='')
    if not _num(settings.get('drill_every_days')):
        return out
    if 'drill_due' not in lock:
        return dict(out, result='skipped', reason='no archive from this run to drill')
    if not lock['drill_due']:
        return dict(out, result='not due', reason=str(lock.get('drill_reason') or ''))
    if check_mode:
        return dict(out, result='skipped', reason='check mode: a run now would drill its archive (%s)' % lock.get('drill_reason'))
    return dict(out, result='skipped', reason='the backup did not complete: no archive to drill')


def backup_record(steps, host, started, now, settings, check_mode=False):
    """This host's record of the backup run, from what each step returned (registered results, {} if it never ran).

    ``steps``: info (alation_info), lock (backup_lock), space (space_check), stage, db (the database step, one
    shape for both engines), archive, retention, cleanup, copy, and error (the run's error text).
    ``settings``: engine, incremental, encrypt_recipient, copy_to, pg_staging_dir, drill_every_days (the role's
    variables). ``steps['drill']``: the scheduled drill's verdict (drill.yml), {} when it did not run.
    ``started``/``now``: the run's start and the record's time on the controller (epoch seconds).
    """
    s = dict((k, v if isinstance(v, dict) else {}) for k, v in (steps or {}).items() if k != 'error')
    info, lock, space, db, a = s.get('info', {}), s.get('lock', {}), s.get('space', {}), s.get('db', {}), s.get('archive', {})
    retention, copy = s.get('retention', {}), s.get('copy', {})
    error = str((steps or {}).get('error') or '')
    skip_reason = str(lock.get('skip_reason') or '')
    fresh = lock.get('fresh') or {}
    warnings = []
    if settings.get('encrypt_recipient') and settings.get('incremental'):
        warnings.append('the archive is encrypted, but the pg staging dir %s is kept between runs (alation_backup_incremental)'
                        ' and holds the database backup unencrypted on this host' % settings.get('pg_staging_dir'))
    archive = a.get('path') or ''
    storage_shell = _get(info, 'paths', 'backup_storage_dir', 'path', default='')
    durations = dict((name, _num(s.get(step, {}).get('duration_s'))) for name, step in
                     (('stage', 'stage'), ('database', 'db'), ('archive', 'archive'), ('cleanup', 'cleanup')))
    # total is the steps' sum, this host's own time; wall is the run's time on the controller.
    durations['total'] = round(sum(durations.values()), 2)
    durations['wall'] = round(_num(now) - _num(started), 2)
    removed = list(space.get('removed') or []) + list(retention.get('removed') or [])
    drill = drill_verdict(s.get('drill', {}), lock, settings, check_mode)
    if drill['result'] == 'failed':
        # Important news although the backup itself is good: the run fails, saying its archive is kept.
        error = '%sdrill: the archive %s was written and verified, but the drill did not restore it: %s' % (
            (error + '; ') if error else '', drill['archive'] or a.get('path') or '?', drill['reason'] or '?')
    if drill['result'] == 'skipped' and s.get('drill'):
        # Only a drill that was due and then could not run (the scratch space) is worth a warning.
        warnings.append(DRILL_SKIPPED + drill['reason'])
    default_copy = dict(result='skipped' if settings.get('copy_to') else 'off', dest='', bytes=0, duration_s=0, error='')
    return dict(
        host=host,
        result=('unreachable' if info.get('unreachable') else 'failed' if error else 'skipped' if skip_reason else 'ok'),
        error=error,
        # What the run did that a person should know although it did not fail (the summary line shows them).
        warnings=warnings,
        skipped_reason=skip_reason,
        # What the freshness guard passed over (a lone .sha256, a damaged archive), and why.
        ignored_archives=fresh.get('ignored') or [],
        # Archives named more than an hour ahead of the host's clock: left alone, never the newest nor counted.
        future_archives=(retention.get('future_archives') or space.get('future_archives') or fresh.get('future_archives') or []),
        # The dead run whose host lock this run took over (its lease was not renewed in time), or "".
        lock_taken_over=_get(lock, 'taken_over', 'description', default=''),
        # An earlier run stopped on the host because its controller stopped polling (an AWX cancel), or "".
        previous_cancel=_get(lock, 'previous_cancel', 'message', default=''),
        check_mode=bool(check_mode),
        engine=db.get('engine') or settings.get('engine') or '',
        mode=db.get('mode') or '',
        mode_reason=db.get('reason') or '',
        backup_id=db.get('backup_id') or '',
        recovered=db.get('recovered') or {},
        # Backup ids of the older incremental chain deleted from the pg staging dir after a new FULL.
        chain_pruned=db.get('pruned') or [],
        archive=archive,
        # The same archive as the Alation shell sees it (/data2/backup/...), for people.
        archive_shell_path=('%s/%s' % (storage_shell.rstrip('/'), archive.rsplit('/', 1)[-1])
                            if archive and storage_shell else ''),
        size=int(_num(a.get('size'))),
        sha256=a.get('sha256') or '',
        compressor=a.get('compressor') or '',
        alation_version=info.get('version') or '',
        # Alation's own backup schedule as preflight read it (next_start, the start within the margin), or {}.
        alation_schedule=info.get('alation_schedule') or {},
        # Every file retention removed (before the backup when the space needed it, and after), and the bytes freed;
        # kept: each archive retention kept, with the rules that keep it ({path, rules}).
        retention=dict(removed=[r.get('path') if isinstance(r, dict) else r for r in removed],
                       freed_bytes=int(_num(space.get('freed_bytes')) + _num(retention.get('freed_bytes'))),
                       refused=retention.get('refused') or '',
                       kept=[k for k in (retention.get('kept') or []) if isinstance(k, dict)]),
        # The off-host copy: result ok, failed, skipped (not reached, or check mode) or off; dest, bytes, ...
        copy=copy.get('copy') or default_copy,
        # The scheduled drill (alation_backup_drill_every_days): ok, failed, skipped, off or not due, and why.
        drill=drill,
        # Each step as its module measured it on the host.
        durations_s=durations,
    )


def report_is_directory(path):
    """True when ``path`` names a directory of reports (it is one, or ends with '/'), False for a report file."""
    return bool(path) and (str(path).endswith('/') or os.path.isdir(path))


def report_path_problem(path, name='the report path'):
    """Why the controller could not write a report at ``path`` ('' when it can): checked before the run.

    A path that is a directory or ends with '/' is a directory of reports (one file a run): it must exist and be
    writable. Any other path is a file: its directory must. ``name`` is what the message calls the path (the role
    variable that set it)."""
    if not path:
        return ''
    if report_is_directory(path):
        directory, what = path.rstrip('/') or '/', 'the directory of reports'
    else:
        directory, what = os.path.dirname(path) or '.', 'its directory'
    if not os.path.exists(directory):
        why = 'does not exist'
    elif not os.path.isdir(directory):
        why = 'is not a directory'
    elif not os.access(directory, os.W_OK | os.X_OK):
        why = 'is not writable by the user running ansible-playbook'
    else:
        return ''
    return ('the controller cannot write %s %s: %s %s %s. Give a path in an existing directory (or, ending with /, '
            'an existing directory) that user may write, or leave it empty' % (name, path, what, directory, why))


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
    then the record's warnings, each as ``; WARNING: <text>``; last the scheduled drill's verdict when one ran or
    was skipped (``; drill OK``, ``; drill FAILED: <why>``, ``; drill SKIPPED: <why>``)."""
    r = record or {}
    line = _result_line(r)
    for warning in r.get('warnings') or []:
        if not str(warning).startswith(DRILL_SKIPPED):
            line += '; WARNING: %s' % _one_line(warning)
    drill = r.get('drill') or {}
    if drill.get('result') == 'ok':
        line += '; drill OK'
    elif drill.get('result') == 'failed' or (drill.get('result') == 'skipped' and any(
            str(w).startswith(DRILL_SKIPPED) for w in r.get('warnings') or [])):
        line += '; drill %s: %s' % (drill['result'].upper(), _one_line(drill.get('reason')))
    return line


def _result_line(r):
    result = r.get('result', '')
    host = r.get('host', '?')
    if result == 'ok':
        return '%s: %s' % (host, ' '.join(['CHECK' if r.get('check_mode') else 'OK'] + _archive_words(r)))
    if result == 'skipped':
        return '%s: SKIPPED %s' % (host, _one_line(r.get('skipped_reason')))
    if result == 'failed' and (r.get('drill') or {}).get('result') == 'failed' and failed_step(r.get('error'))[0] == 'drill':
        # The backup itself is good and kept; the drill could not bring it back (said after: "; drill FAILED: ...").
        return '%s: FAILED %s (written, but it did not restore)' % (host, ' '.join(_archive_words(r)))
    if result == 'failed':
        step, msg = failed_step(r.get('error'))
        return '%s: FAILED %s%s' % (host, (step + ': ') if step else '', _one_line(msg))
    # Unreachable, not run: the reason, without the task that met it.
    return '%s: %s %s' % (host, result.upper() or '?', _one_line(failed_step(r.get('error'))[1]))


def _archive_words(r):
    """``FULL 12.7 GiB in 14m02s -> /data2/backup/<archive>``, as far as the record knows them."""
    words = []
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
    return words


class FilterModule(object):
    def filters(self):
        return dict(run_records=run_records, summary_line=summary_line, backup_record=backup_record,
                    report_path_problem=report_path_problem)
