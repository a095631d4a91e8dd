# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A controller that goes away: an AWX cancel kills the controller only.

The backup role runs in a real Alation shell with a database step slowed
down (pg_basebackup --max-rate through a wrapper in the bindir; a
pg_probackup wrapper that sleeps before the backup); the whole
controller process tree is killed mid-step. The step on the host must stop
by itself within alation_backup_controller_timeout (its programs gone, the
lease released, a cancel state file written), leave the database password
in no file, and the next run must start at once and succeed.
"""

import json
import shutil
import os
import signal
import subprocess
import time
import uuid

import pytest

import playbook
from playbook import HOST, run_playbook
from restoring import restore_vars, run_restore_playbook

PG_BIN = '/usr/lib/postgresql/15/bin'
SLOW_BIN = '/opt/slow-pg/bin'
RATE = '--max-rate=32k'
TIMEOUT = 10
# After the kill: the step notices within TIMEOUT (+1 s of its own look), stops pg_basebackup (SIGTERM, 5 s
# grace), releases the lease. Slack for a busy machine.
MARGIN = 40


def slow_bindir(host):
    """A bindir inside the shell whose pg_basebackup reads at 32 kB/s (minutes for the pgbench scale 1 cluster)."""
    d = host.path(SLOW_BIN)
    os.makedirs(d)
    for name in os.listdir(host.path(PG_BIN)):
        os.symlink(os.path.join(PG_BIN, name), os.path.join(d, name))
    os.unlink(os.path.join(d, 'pg_basebackup'))
    with open(os.path.join(d, 'pg_basebackup'), 'w') as f:
        f.write('#!/bin/sh\nexec %s/pg_basebackup %s "$@"\n' % (PG_BIN, RATE))
    os.chmod(os.path.join(d, 'pg_basebackup'), 0o755)
    return SLOW_BIN


def slow_pg_probackup(host, command='backup'):
    """A pg_probackup inside the shell whose ``command`` first sleeps (a shell and its child: a tree to stop)."""
    os.makedirs(host.path(SLOW_BIN))
    path = os.path.join(SLOW_BIN, 'pg_probackup')
    with open(host.path(path), 'w') as f:
        f.write('#!/bin/sh\ncase "$1" in %s) /bin/sleep %s ;; esac\nexec /usr/local/bin/pg_probackup "$@"\n'
                % (command, SLEEP))
    os.chmod(host.path(path), 0o755)
    return path


SLEEP = '600.5'
# The programs of the slowed database step, by a word of their command lines.
NEEDLES = {'pg_basebackup': (RATE,), 'pg_probackup': ('/bin/sleep ' + SLEEP, SLOW_BIN + '/pg_probackup backup')}
MODULE = {'pg_basebackup': 'AnsiballZ_pg_basebackup', 'pg_probackup': 'AnsiballZ_pg_probackup'}


def cmdline(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            return f.read().replace(b'\0', b' ').decode('utf-8', 'replace')
    except OSError:
        return ''


def alive(pid):
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except (OSError, IndexError):
        return False


def processes(*needles):
    return sorted(int(p) for p in os.listdir('/proc')
                  if p.isdigit() and any(n in cmdline(int(p)) for n in needles) and alive(int(p)))


def descendants(root):
    children = {}
    for p in os.listdir('/proc'):
        if p.isdigit():
            try:
                with open('/proc/%s/stat' % p) as f:
                    ppid = int(f.read().rsplit(')', 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(p))
    found, todo = set(), [root]
    while todo:
        for pid in children.get(todo.pop(), ()):
            if pid not in found:
                found.add(pid)
                todo.append(pid)
    return found


def kill_controller(pid, spared=None):
    """kill -9 ansible-playbook and every process under it (found by ppid: ansible-core's workers start sessions
    of their own), all stopped first. The host's async job was daemonized away from this tree, as on a real host.
    ``spared``: processes whose command line holds it are left running, as a call that runs on a remote host is
    out of a dying controller's reach."""
    stopped = set()
    for dummy in range(50):
        new = {p for p in ({pid} | descendants(pid)) - stopped if not spared or spared not in cmdline(p)}
        if not new:
            break
        for p in new:
            try:
                os.kill(p, signal.SIGSTOP)
            except ProcessLookupError:
                pass
        stopped |= new
    for p in stopped:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return stopped


def files_holding(secret, roots):
    """Every file under ``roots`` whose bytes hold ``secret``."""
    found = []
    needle = secret.encode()
    for root in roots:
        for top, dummy, names in os.walk(root):
            for name in names:
                path = os.path.join(top, name)
                try:
                    with open(path, 'rb') as f:
                        if needle in f.read():
                            found.append(path)
                except OSError:
                    continue
    return found


def wait_until(predicate, timeout, step=0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


SECRET_DIRS = [os.path.expanduser('~/.ansible/tmp'), os.path.expanduser('~/.ansible_async'), '/dev/shm']


@pytest.mark.parametrize('engine', ['pg_basebackup', 'pg_probackup'])
def test_a_killed_controller_stops_the_host_step_frees_the_host_and_leaves_no_secret(engine, alation_host, scratch):
    host = alation_host
    if engine == 'pg_probackup' and not host.has_pg_probackup:
        pytest.skip('pg_probackup not found ($PG_PROBACKUP unset and none on PATH)')
    password = 'Zq7-ctl-gone-%s' % uuid.uuid4().hex[:12]
    base = dict(host.role_vars, alation_backup_engine=engine, alation_backup_pg_password=password,
                alation_backup_controller_timeout=TIMEOUT, alation_backup_progress_interval=1)
    slow = dict(alation_backup_pg_bindir=slow_bindir(host)) if engine == 'pg_basebackup' else \
        dict(alation_backup_pg_probackup_binary=slow_pg_probackup(host))
    programs = NEEDLES[engine]
    workdir = os.path.join(scratch, 'cancelled-run')
    os.makedirs(workdir)
    argv, env, dummy = playbook._argv_env(  # pylint: disable=protected-access
        'backup.yml', dict(base, **slow), workdir=workdir)
    with open(os.path.join(workdir, 'output.txt'), 'w') as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    lease = host.path('/data2/backup/.alation_backup.lock')
    try:
        assert wait_until(lambda: processes(*programs), 300), '%s never started' % engine
        # The controller is polling: the step runs on past its timeout.
        time.sleep(TIMEOUT + 3)
        assert processes(*programs) and proc.poll() is None
        during = files_holding(password, SECRET_DIRS)
        killed = kill_controller(proc.pid)
    finally:
        if proc.poll() is None:
            kill_controller(proc.pid)
    proc.wait(timeout=30)
    assert killed

    stopped_at = time.monotonic()
    assert wait_until(lambda: not processes(*programs) and not os.path.exists(lease), TIMEOUT + MARGIN), \
        'the host step still runs %ds after the controller died: %s; lease there: %s' % (
            TIMEOUT + MARGIN, processes(*programs), os.path.exists(lease))
    took = time.monotonic() - stopped_at
    # The module itself (and async_wrapper's watch of it) is gone too.
    assert wait_until(lambda: not processes(MODULE[engine]), 20), processes(MODULE[engine])
    with open(host.path('/data2/backup/.alation_backup.cancelled.json')) as f:
        state = json.load(f)
    assert state['result'] == 'cancelled' and state['step'] == 'database'
    assert state['message'].startswith('cancelled: the controller stopped polling at ')
    assert not os.path.exists(lease + '.poll')
    # The password was in no file while the step ran (not in the async module's payload either), nor after.
    assert during == []
    assert files_holding(password, SECRET_DIRS) == []

    # The next run starts at once (no lease to wait out) and succeeds; its record tells of the cancel.
    started = time.monotonic()
    run = run_playbook('backup.yml', base)
    assert run.rc == 0, run.output
    record = run.records[HOST]
    assert record['result'] == 'ok', record
    assert record['lock_taken_over'] == '', 'the lease was released, not taken over'
    assert record['previous_cancel'] == state['message']
    assert files_holding(password, SECRET_DIRS) == []
    print('%s: host step stopped %.1fs after the controller died (timeout %ds); next run %.1fs'
          % (engine, took, TIMEOUT, time.monotonic() - started))


@pytest.mark.parametrize('compressor', ['pigz', 'zlib'])
def test_the_archive_step_stops_itself_when_its_controller_is_silent(compressor, scratch):
    """The archive module alone, never polled: with pigz its compressor is a program to stop; with zlib it packs
    in Python and is interrupted. Either way its temporary file goes, the lease is released, the state written."""
    from modrun import result_of, spawn_module
    from ansible_collections.alation.backup.plugins.module_utils import _locks, _watch

    src, dest = os.path.join(scratch, 'staging'), os.path.join(scratch, 'backup')
    os.makedirs(src)
    os.makedirs(dest)
    block = os.urandom(1 << 20).hex().encode()  # 2 MiB of text: slow at level 9, and no quicker for repeats
    for i in range(48):
        with open(os.path.join(src, 'big%02d.txt' % i), 'wb') as f:
            f.write(block[i:] + block[:i])
    lease_path = os.path.join(dest, '.alation_backup.lock')
    record, dummy = _locks.acquire_lease(lease_path, 'test', 'run-1', 600)
    args = dict(sources=[dict(path=src, arcname='tmp')], dest=dest, version_tag='5-17-0-116556',
                timestamp='202601010000', compressor=compressor, compression_level=9, threads=1,
                lease=dict(path=lease_path, token=record['token']),
                controller_mark=lease_path + '.poll', controller_timeout=2)
    if compressor == 'pigz' and not shutil.which('pigz'):
        pytest.skip('no pigz')
    started = time.monotonic()
    proc, args_file = spawn_module('archive', args)
    result = result_of(proc, args_file, timeout=120)
    took = time.monotonic() - started
    assert result['failed'] and result['msg'].startswith('cancelled: the controller stopped polling at '), result
    assert took < 2 + 5 + 5 + 10, 'stopped %.1fs after it started' % took
    assert os.listdir(dest) == ['.alation_backup.cancelled.json'], 'no temporary file, no archive, no lease, no mark'
    assert _watch.read_state(dest)['step'] == 'archive'
    print('%s: the archive step stopped %.1fs after it started (timeout 2s)' % (compressor, took))


def test_a_killed_controller_stops_the_drills_rebuild_and_the_next_drill_starts_at_once(alation_host, scratch):
    host = alation_host
    if not host.has_pg_probackup:
        pytest.skip('pg_probackup not found ($PG_PROBACKUP unset and none on PATH)')
    run = run_playbook('backup.yml', dict(host.role_vars, alation_backup_engine='pg_probackup'))
    assert run.rc == 0, run.output
    workdir = os.path.join(scratch, 'cancelled-drill')
    os.makedirs(workdir)
    drill_vars = restore_vars(host.role_vars, alation_restore_controller_timeout=TIMEOUT,
                              alation_restore_pg_probackup_binary=slow_pg_probackup(host, 'restore'),
                              alation_restore_report_path=os.path.join(workdir, 'report.json'))
    argv, env, dummy = playbook._argv_env('verify_backup.yml', drill_vars, workdir=workdir)  # pylint: disable=protected-access
    with open(os.path.join(workdir, 'output.txt'), 'w') as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    sleeping = ('/bin/sleep ' + SLEEP,)
    lock = host.path('/data2/backup/.alation_restore.lock')
    try:
        assert wait_until(lambda: processes(*sleeping), 300), 'the rebuild never started'
        time.sleep(TIMEOUT + 3)
        assert processes(*sleeping) and proc.poll() is None and os.path.exists(lock)
        kill_controller(proc.pid)
    finally:
        if proc.poll() is None:
            kill_controller(proc.pid)
    proc.wait(timeout=30)
    assert wait_until(lambda: not processes(*sleeping) and not os.path.exists(lock), TIMEOUT + MARGIN), \
        'the rebuild still runs: %s; lock there: %s' % (processes(*sleeping), os.path.exists(lock))
    assert wait_until(lambda: not processes('AnsiballZ_pgdata_restore'), 20)
    with open(host.path('/data2/backup/.alation_backup.cancelled.json')) as f:
        state = json.load(f)
    assert state['step'] == 'rebuild' and state['message'].startswith('cancelled: the controller stopped polling at ')

    again = run_restore_playbook('verify_backup.yml', restore_vars(host.role_vars))
    assert again.rc == 0, again.output
    assert again.records[HOST]['result'] == 'ok', again.records[HOST]


COPY_SLEEP = '600.7'


def slow_ssh_dir(scratch):
    """A dir for the front of PATH whose ssh first sleeps when it carries the archive (``cat > ``, the stream
    method), then is the real ssh: the copy outlasts the controller timeout; its other ssh calls are quick."""
    d = os.path.join(scratch, 'slow-ssh')
    os.makedirs(d)
    with open(os.path.join(d, 'ssh'), 'w') as f:
        f.write('#!/bin/sh\ncase "$*" in *"cat > "*) /bin/sleep %s ;; esac\nexec %s "$@"\n'
                % (COPY_SLEEP, shutil.which('ssh')))
    os.chmod(os.path.join(d, 'ssh'), 0o755)
    return d


def test_a_killed_controller_stops_the_copy_and_its_key_goes(alation_host, sshd, scratch):
    """The off-host copy runs in the background too: killed controller, the copy (ssh and its sleep) stops, the
    lease is released, the key's tmpfs dir and secret file go, nothing lands under a final name there."""
    host = alation_host
    base = dict(host.role_vars, alation_backup_engine='pg_basebackup', alation_backup_controller_timeout=TIMEOUT,
                alation_backup_progress_interval=1, alation_backup_copy_to=sshd.dest(),
                alation_backup_copy_ssh_key=sshd.user_key, alation_backup_copy_known_hosts=sshd.known_hosts,
                alation_backup_copy_method='stream')
    with open(sshd.user_key) as f:
        key = f.read().strip().splitlines()[-2]  # a line of its private part (the first lines are alike in every key)
    workdir = os.path.join(scratch, 'cancelled-copy')
    os.makedirs(workdir)
    env = dict(PATH=slow_ssh_dir(scratch) + ':' + os.environ['PATH'])
    argv, env, dummy = playbook._argv_env('backup.yml', base, workdir=workdir, env=env)  # pylint: disable=protected-access
    with open(os.path.join(workdir, 'output.txt'), 'w') as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    lease = host.path('/data2/backup/.alation_backup.lock')
    needle = '/bin/sleep ' + COPY_SLEEP
    try:
        if not wait_until(lambda: processes(needle), 300):
            with open(os.path.join(workdir, 'output.txt')) as f:
                pytest.fail('the copy never started:\n' + f.read()[-4000:])
        time.sleep(TIMEOUT + 3)
        assert processes(needle) and proc.poll() is None, 'the copy runs on past the timeout while polled'
        # On disk, not tmpfs: the key dir the copy uses lives in /dev/shm while it runs, by design.
        during = files_holding(key, SECRET_DIRS[:2])
        killed = kill_controller(proc.pid)
    finally:
        if proc.poll() is None:
            kill_controller(proc.pid)
    proc.wait(timeout=30)
    assert killed
    assert wait_until(lambda: not processes(needle) and not os.path.exists(lease), TIMEOUT + MARGIN), \
        'the copy still runs %ds after the controller died: %s' % (TIMEOUT + MARGIN, processes(needle))
    assert wait_until(lambda: not processes('AnsiballZ_offsite_copy'), 20)
    with open(host.path('/data2/backup/.alation_backup.cancelled.json')) as f:
        state = json.load(f)
    assert state['result'] == 'cancelled' and state['step'] == 'copy', state
    # The key was in no payload on disk while the copy ran, and nowhere after (its tmpfs dir went too).
    assert during == [] and files_holding(key, SECRET_DIRS) == []
    far = sshd.host_dir(HOST)
    assert not [n for n in os.listdir(far) if n.endswith('.tar.gz')], 'nothing under a final name there'

    run = run_playbook('backup.yml', dict(base, alation_backup_copy_method='auto'))
    assert run.rc == 0, run.output
    record = run.records[HOST]
    assert record['copy']['result'] == 'ok' and record['lock_taken_over'] == '', record
    assert not [n for n in os.listdir(far) if n.endswith('.tmp')], "the killed copy's temp file went too"
