# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The restore role's record: the step a failure belongs to, the checks, and one line a host a person reads.

The role registers what each module returned and hands it here as one dict (``run``, vars/main.yml
``__alation_restore_run``); nothing is recorded step by step with ``set_fact``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type  # pylint: disable=invalid-name

import re

# The first word of the role's task names ("Rebuild | ...") -> the step, as the record and the error name it.
STEPS = {'paths': 'paths', 'find': 'find', 'checksum': 'sha256', 'extract': 'extract', 'rebuild': 'rebuild',
         'files': 'files', 'start': 'consistent', 'check': 'check', 'cleanup': 'cleanup'}
NOT_REACHED = {'result': 'skipped', 'detail': 'not reached'}


def check_names(mode):
    """The checks of a drill or a restore, in the order they run."""
    return (['sha256', 'extract', 'rebuild'] + (['files'] if mode == 'restore' else [])
            + ['consistent', 'databases', 'amcheck', 'table_counts'])


def restore_step(task_name, result=None):
    """The step a failed task belongs to: ``'Rebuild | Wait for ...'`` -> ``'rebuild'``.

    The one task that finds the archive, checks its sha256 and reads its manifest (archive_info) belongs to
    the step it got to: no archive found -> find; found, its sha256 not matched -> sha256; else the manifest
    (the extract step).
    """
    word = str(task_name or '').split(' | ', maxsplit=1)[0].strip().lower()
    step = STEPS.get(word, word or '?')
    if step == 'find' and isinstance(result, dict) and result.get('path'):
        if not result.get('sha256') or result.get('sha256') != result.get('sha256_recorded'):
            return 'sha256'
        return 'extract'
    return step


def _ran(result):
    """A registered result of a task that ran and did not fail."""
    return isinstance(result, dict) and bool(result) and not result.get('skipped') and not result.get('failed')


def _aside(result):
    return (' (the old one moved aside to %s)' % result['moved_aside']) if result.get('moved_aside') else ''


def _step(check_mode, would, did):
    return {'result': 'skipped', 'detail': would} if check_mode else {'result': 'ok', 'detail': did}


def _amcheck(run):
    a = run.get('amcheck_result') or {}
    if not run.get('amcheck'):
        return {'result': 'skipped', 'detail': 'turned off (alation_restore_amcheck)'}
    if not a.get('available', True):
        return {'result': 'skipped', 'detail': a.get('msg', '')}
    if a.get('failed'):
        return {'result': 'failed', 'detail': a.get('msg') or 'pg_amcheck failed'}
    return {'result': 'ok', 'detail': 'no corruption in %s (heap, B-tree indexes%s)'
            % (', '.join(a.get('databases') or []), ', heapallindexed' if run.get('heapallindexed') else '')}


def restore_checks(run):
    """Every check of the run, in order, with its result (ok, failed, skipped) and a detail; and what check mode
    would have done, as ``(checks, would)``."""
    mode, check_mode = run.get('mode'), bool(run.get('check_mode'))
    head, manifest = run.get('head') or {}, run.get('manifest') or {}
    checks = dict((name, dict(NOT_REACHED)) for name in check_names(mode))
    would = []
    if head.get('sha256') and head.get('sha256') == head.get('sha256_recorded'):
        checks['sha256'] = {'result': 'ok', 'detail': 'matches its .sha256 file (%s, hashed in %s s)'
                            % (head['sha256'], head.get('duration_s'))}
    e = run.get('extract') or {}
    if _ran(e):
        sources = e.get('sources') or []
        what = '%s: %s files, %s bytes' % (' and '.join(s.get('arcname', '') for s in sources),
                                           sum(s.get('files', 0) for s in sources), e.get('bytes'))
        checks['extract'] = _step(check_mode, 'would unpack %s into %s' % (what, e.get('dest')),
                                  '%s unpacked and matching the manifest, in %s s' % (what, e.get('duration_s')))
        if check_mode:
            would.append('unpack %s of %s into %s' % (what, head.get('path'), e.get('dest')))
    r = run.get('rebuild') or {}
    if _ran(r):
        # pg_basebackup's backup_id is only its label.
        backup_id = (' %s' % manifest['backup_id']) if manifest.get('engine') == 'pg_probackup' and manifest.get('backup_id') else ''
        what = '%s backup%s (%s) into %s' % (manifest.get('engine'), backup_id, manifest.get('backup_mode', 'FULL'), r.get('pgdata'))
        checks['rebuild'] = _step(check_mode, 'would restore %s%s' % (what, _aside(r)),
                                  'restored %s%s in %s s; files checked by %s'
                                  % (what, _aside(r), r.get('duration_s'), r.get('verified') or 'nothing (no verifier present)'))
        if check_mode:
            would.append('restore ' + what)
            if r.get('moved_aside'):
                would.append('move %s aside to %s' % (run.get('pgdata_path'), r['moved_aside']))
    f = run.get('files') or {}
    if 'files' in checks and _ran(f):
        what = '%s files, %s bytes into %s' % (sum(s.get('files', 0) for s in f.get('sources') or []), f.get('bytes'), f.get('dest'))
        checks['files'] = _step(check_mode, 'would put %s%s' % (what, _aside(f)),
                                '%s%s, matching the manifest, in %s s' % (what, _aside(f), f.get('duration_s')))
        if check_mode:
            would.append('put the staging files (%s)' % what)
            if f.get('moved_aside'):
                would.append('move %s aside to %s' % (run.get('files_dest_path'), f['moved_aside']))
    s = run.get('server') or {}
    if _ran(s):
        checks['consistent'] = _step(
            check_mode, 'would start PostgreSQL on %s and a free loopback port' % s.get('socket_dir'),
            'PostgreSQL %s on 127.0.0.1:%s started in %s s: %s'
            % (s.get('pg_version'), s.get('port'), s.get('duration_s'),
               '; '.join(re.sub(r'^.*LOG:\s+', '', line) for line in s.get('consistent') or [])))
    i = run.get('inventory') or {}
    if check_mode and i.get('skipped'):
        checks.update(dict((name, {'result': 'skipped', 'detail': 'check mode'}) for name in ('databases', 'amcheck', 'table_counts')))
    elif i and not i.get('skipped'):
        if i.get('failed'):
            failed = {'result': 'failed', 'detail': i.get('msg') or 'pg_inventory failed'}
            checks.update(databases=failed, table_counts=dict(failed))
        else:
            comparison = i.get('comparison') or {}
            checks.update(databases=comparison.get('databases', NOT_REACHED), table_counts=comparison.get('table_counts', NOT_REACHED))
        checks['amcheck'] = _amcheck(run)
    # The step that failed, when it is a check and not failed already (by the check step itself).
    failure = run.get('failure') or {}
    step = failure.get('step')
    if step in checks and checks[step]['result'] != 'failed':
        checks[step] = {'result': 'failed', 'detail': failure.get('msg', '')}
    return checks, would


def restore_failed_checks(run):
    """``'databases failed: ...; amcheck failed: ...'`` for the checks that failed, '' when none did."""
    checks = restore_checks(run)[0]
    return '; '.join('%s failed: %s' % (name, c.get('detail', '')) for name, c in checks.items() if c['result'] == 'failed')


def restore_record(run, host, duration_s):
    """This host's record of the drill or restore (alation_restore_result)."""
    checks, would = restore_checks(run)
    failure, cleanup = run.get('failure') or {}, run.get('cleanup_error') or ''
    errors = (['%s: %s' % (failure['step'], failure.get('msg', ''))] if failure.get('step') else []) + \
        (['cleanup: %s' % cleanup] if cleanup else [])
    error = '; '.join(errors)
    head, manifest = run.get('head') or {}, run.get('manifest') or {}
    restore = run.get('mode') == 'restore'
    inventory = run.get('inventory') or {}

    def took(name):
        result = run.get(name) or {}
        return result.get('duration_s', 0) if isinstance(result, dict) else 0

    return dict(
        host=host, mode=run.get('mode'), result='failed' if error else 'ok', error=error,
        failed_check=next((name for name, c in checks.items() if c['result'] == 'failed'), ''),
        failed_step=error.split(':', maxsplit=1)[0] if error else '',
        check_mode=bool(run.get('check_mode')),
        archive=head.get('path') or '', size=head.get('size') or 0,
        sha256=(head.get('sha256') or '') if head.get('sha256') == head.get('sha256_recorded') else '',
        alation_version=manifest.get('alation_version', manifest.get('version_tag', '')),
        backed_up_utc=manifest.get('created_utc', ''), engine=manifest.get('engine', ''),
        backup_mode=manifest.get('backup_mode', ''), backup_id=manifest.get('backup_id', ''),
        databases_recorded=manifest.get('databases', {}),
        databases_found=inventory.get('databases', {}) if _ran(inventory) else {},
        checks=checks, would=would,
        pgdata=(run.get('pgdata_path') or '') if restore else '',
        pgdata_moved_aside=(run.get('rebuild') or {}).get('moved_aside') or '',
        files_dest=(run.get('files_dest_path') or '') if restore else '',
        files_moved_aside=(run.get('files') or {}).get('moved_aside') or '',
        duration_s=round(float(duration_s), 2),
        # Each step as its module measured it on the host.
        durations_s=dict(sha256=head.get('duration_s', 0), extract=took('extract'), rebuild=took('rebuild'),
                         files=took('files'), server=took('server'), cleanup=took('cleanup')))


def restore_summary_line(record):
    """``host: DRILL OK <archive> in 9.5 s [sha256=ok ...]`` and the error, if any."""
    r = record or {}
    checks = ' '.join('%s=%s' % (name, c.get('result')) for name, c in (r.get('checks') or {}).items())
    return '%s: %s%s %s %s in %s s [%s]%s' % (
        r.get('host'), 'CHECK MODE ' if r.get('check_mode') else '', str(r.get('mode', '')).upper(),
        str(r.get('result', '')).upper(), (r.get('archive') or '').rsplit('/', 1)[-1], r.get('duration_s'), checks,
        (' ' + r['error']) if r.get('error') else '')


class FilterModule(object):
    def filters(self):
        return dict(restore_step=restore_step, restore_failed_checks=restore_failed_checks, restore_record=restore_record,
                    restore_summary_line=restore_summary_line)
