# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a run tells people, inside real Alation shells: every host in the summary, stats and report; one
line a host; progress while the long steps run; a short default output; each host's own durations."""

import os
import re
import shutil
import sys
import tempfile

import pytest

import alation_shell
from playbook import HOST, local_host, run_playbook

ARCHIVE = r'/data2/backup/\d{12}_5-17-0-116556_alation_backup\.tar\.gz'
UNREACHABLE = 'alation-unreachable'
NO_PYTHON = 'alation-no-python'


def shell_host(host, **hostvars):
    """Inventory vars of a shell host; its root and port go in the inventory, per host (not in extra vars)."""
    return local_host(**dict(host.role_vars, **hostvars))


def summary_lines(output):
    """The summary task's lines (its msg list)."""
    block = output.split('Summary | One line a host', 1)[1].split('TASK [', 1)[0]
    return re.findall(r'^\s+"(.*)",?$', block, re.M)


def custom_stats(output):
    """The hosts named under alation_backup in the CUSTOM STATS block (ANSIBLE_SHOW_CUSTOM_STATS=1)."""
    block = output.split('CUSTOM STATS:', 1)[1]
    return sorted(set(re.findall(r'"(alation-[a-z-]+)": \{', block)))


def test_every_host_is_in_the_summary_the_stats_and_the_report(alation_host):
    hosts = {HOST: shell_host(alation_host),
             # ssh to a port nobody listens on: Ansible cannot reach it.
             UNREACHABLE: dict(ansible_connection='ssh', ansible_host='127.0.0.1', ansible_port=1,
                               ansible_python_interpreter=sys.executable),
             NO_PYTHON: local_host('/nonexistent/bin/python3', **alation_host.role_vars)}
    run = run_playbook('backup.yml', {'alation_backup_engine': 'pg_basebackup'}, hosts=hosts,
                       env={'ANSIBLE_SHOW_CUSTOM_STATS': '1'})
    print(run.output)
    assert run.rc != 0
    records = run.records
    assert sorted(records) == sorted(hosts)
    assert records[HOST]['result'] == 'ok'
    assert records[UNREACHABLE]['result'] == 'unreachable'
    assert 'port 1' in records[UNREACHABLE]['error'] or 'refused' in records[UNREACHABLE]['error'], records
    assert records[NO_PYTHON]['result'] == 'failed' and '/nonexistent/bin/python3' in records[NO_PYTHON]['error']
    lines = summary_lines(run.output)
    assert len(lines) == 3, lines
    assert re.match(r'^%s: OK FULL [\d.]+ (KiB|MiB) in [\d.]+s -> %s$' % (HOST, ARCHIVE), lines[0]), lines
    assert re.match(r'^%s: UNREACHABLE .*(port 1|refused)' % UNREACHABLE, lines[1]), lines
    assert re.match(r"^%s: FAILED (connect|preflight): The module interpreter '/nonexistent" % NO_PYTHON, lines[2]), lines
    assert custom_stats(run.output) == sorted(hosts)


def test_a_host_dropped_before_the_role_is_not_run_and_check_mode_says_check(alation_host, scratch):
    # A playbook of a site's own that gathers facts first: the host without Python fails there, before the role.
    playbook = os.path.join(scratch, 'site.yml')
    with open(playbook, 'w') as f:
        f.write('- hosts: alation\n  gather_facts: true\n  become: false\n  roles:\n    - alation.backup.backup\n')
    hosts = {HOST: shell_host(alation_host), NO_PYTHON: local_host('/nonexistent/bin/python3')}
    run = run_playbook(playbook, {'alation_backup_engine': 'pg_basebackup'}, check=True, hosts=hosts,
                       env={'ANSIBLE_SHOW_CUSTOM_STATS': '1'})
    assert run.rc != 0  # fact gathering failed on one host
    records = run.records
    assert records[NO_PYTHON]['result'] == 'not run' and 'never ran' in records[NO_PYTHON]['error']
    assert records[HOST]['result'] == 'ok' and records[HOST]['check_mode'] is True
    lines = summary_lines(run.output)
    assert re.match(r'^%s: CHECK FULL in [\d.]+s -> %s$' % (HOST, ARCHIVE), lines[0]), lines
    assert lines[1].startswith(NO_PYTHON + ': NOT RUN the role never ran here'), lines
    assert custom_stats(run.output) == sorted(hosts)


@pytest.fixture
def big_and_small():
    """Two shells: one with pgbench scale 10 (about 160 MB of tables), one with scale 1."""
    roots = [tempfile.mkdtemp(prefix='alation-backup-test-') for dummy in range(2)]
    try:
        shells = [alation_shell.ShellHost(os.path.join(r, 'alation'), alation_shell.up(os.path.join(r, 'alation'), scale=s))
                  for r, s in zip(roots, (10, 1))]
        yield shells
    finally:
        for r in roots:
            alation_shell.down(os.path.join(r, 'alation'), purge=True)
            shutil.rmtree(r, ignore_errors=True)


def test_progress_lines_and_each_hosts_own_durations(big_and_small):
    big, small = big_and_small
    hosts = {'alation-big': shell_host(big), 'alation-small': shell_host(small)}
    # A line a second, and an archive slow enough to show some (zlib -9 on one thread).
    run = run_playbook('backup.yml', {'alation_backup_engine': 'pg_basebackup', 'alation_backup_progress_interval': 1,
                                      'alation_backup_compressor': 'zlib', 'alation_backup_compression_level': 9,
                                      'alation_backup_threads': 1}, hosts=hosts)
    print(run.output)
    assert run.rc == 0, run.output
    progress = re.findall(r'^alation-big: (database|archive) [\d.]+ (?:B|KiB|MiB|GiB) of ~[\d.]+ (?:KiB|MiB|GiB) '
                          r'\(\d+%\), [\d.]+ (?:B|KiB|MiB|GiB)/s(?:, ~[\w.]+ left|, finishing)?$', run.output, re.M)
    # The database step takes a few seconds here: its lines come when the machine is slow enough.
    assert progress.count('archive') >= 2, run.output
    records = run.records
    big_s, small_s = records['alation-big']['durations_s'], records['alation-small']['durations_s']
    # Each host's total is its own steps' time: the big host's (3.5 times the bytes) is longer. Each host goes at
    # its own pace (the free strategy): the small host's record was written before the big one's, which the summary
    # waited for. No ratio beyond that: with other tests on the machine the small host's share of the CPUs varies.
    assert big_s['total'] > small_s['total'], (big_s, small_s)
    assert big_s['wall'] > small_s['wall'], (big_s, small_s)
    assert run.output.count('Summary | One line a host') == 1 and run.output.index('alation-small: OK') > \
        run.output.index('PLAY [Alation Backup V1 | Summary]'), 'one summary, after every host'
    assert big_s['total'] == pytest.approx(big_s['stage'] + big_s['database'] + big_s['archive'] + big_s['cleanup'],
                                           abs=0.02)


def test_the_default_output_is_short_and_warns_of_nothing(alation_host):
    # The default engine where the shell has it; pg_basebackup's output is the same shape.
    engine = {} if alation_host.has_pg_probackup else {'alation_backup_engine': 'pg_basebackup'}
    run = run_playbook('backup.yml', engine, hosts={HOST: shell_host(alation_host)})
    print('--- verbosity 0 output, %d lines ---\n%s' % (len(run.output.splitlines()), run.output))
    assert run.rc == 0, run.output
    assert '[WARNING]' not in run.output
    assert '"alation_backup_result"' not in run.output, 'the record is shown at -v only'
    [line] = summary_lines(run.output)
    assert re.match(r'^%s: OK FULL [\d.]+ (KiB|MiB) in [\d.]+s -> %s$' % (HOST, ARCHIVE), line), line
    # 206 lines before (a 25-line JSON record twice); each task is 3 lines, and that is most of what is left.
    assert len(run.output.splitlines()) < 170
