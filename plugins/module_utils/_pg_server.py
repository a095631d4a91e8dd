# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A temporary PostgreSQL server on a restored data directory, apart from the live one.

What a data directory says about itself (its version, its running
postmaster), the settings that keep a temporary server off the live
cluster's files, and the core of temp_postgres (``Server``): start with
pg_ctl, record what it started, stop only that. Standard library only.
"""

import json
import os
import re
import shlex
import socket
import time

from ansible_collections.alation.backup.plugins.module_utils._host import command_failure, pid_alive, write_file
from ansible_collections.alation.backup.plugins.module_utils._host import make_private_dir
from ansible_collections.alation.backup.plugins.module_utils._restore import RestoreError
from ansible_collections.alation.backup.plugins.module_utils._runner import NOT_RUN, find_program, not_found
from ansible_collections.alation.backup.plugins.module_utils._users import Accounts

# In socket_dir: the module's record of the server it started, the server's own hba file and its log.
RECORD = 'temp_postgres.json'
HBA = 'pg_hba.conf'
LOG = 'postgresql.log'
# Only local socket connections, in a directory only the database OS user can enter.
HBA_TEXT = '# Written by alation.backup.temp_postgres: local socket connections only.\nlocal all all trust\n'
LOG_ERROR_RE = re.compile(r'\b(FATAL|PANIC|ERROR):')
LOG_CONSISTENT_RE = re.compile(r'consistent recovery state reached at \S+|database system is ready to accept connections')


# -- what a data directory says ------------------------------------------------------

def running_postmaster(pgdata):
    """The pid of a live postmaster on ``pgdata`` (host path), from its postmaster.pid; else None."""
    try:
        with open(os.path.join(pgdata, 'postmaster.pid')) as f:
            pid = int(f.readline().strip())
    except (OSError, ValueError):
        return None
    return pid if pid > 0 and pid_alive(pid) else None


def pg_major_version(pgdata):
    """The PG_VERSION of a data directory (host path), or None."""
    try:
        with open(os.path.join(pgdata, 'PG_VERSION')) as f:
            return f.read().strip() or None
    except OSError:
        return None


# -- how the server runs ------------------------------------------------------------

def free_port(host='127.0.0.1'):
    """A TCP port on ``host`` that is free now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# Settings that keep a temporary server away from everything of the live
# cluster's: this data directory whatever its postgresql.conf says, loopback
# and its own socket dir only, its own pid file, no WAL archiving (it would
# push into the live archive), no standby connection, little memory, logs to
# our file. Everything else is as in the backup, so the drill starts the
# server as production would.
def server_settings(pgdata, port, socket_dir, hba_file, major=None, extra=None):
    try:
        major = float(str(major)) if major else 99.0
    except ValueError:
        major = 99.0
    settings = [
        ('data_directory', pgdata),
        ('external_pid_file', ''),
        ('listen_addresses', '127.0.0.1'),
        ('port', str(port)),
        ('unix_socket_directories', socket_dir),
        ('hba_file', hba_file),
        ('archive_mode', 'off'),
        ('shared_buffers', '128MB'),
        ('huge_pages', 'off'),
        ('logging_collector', 'off'),
        ('ssl', 'off'),
    ]
    if major >= 12:
        # Recovery settings became server settings in 12; before, they live in recovery.conf.
        settings += [('restore_command', ''), ('primary_conninfo', '')]
    if major < 15:
        # Before 15 it may point at a directory the live server uses.
        settings.append(('stats_temp_directory', 'pg_stat_tmp'))
    overridden = dict(extra or {})
    return [(k, overridden.pop(k, v)) for k, v in settings] + sorted(overridden.items())


def postgres_options(settings):
    """The ``pg_ctl -o`` string: pg_ctl hands it to a shell, so each value is quoted."""
    return ' '.join('-c %s' % shlex.quote('%s=%s' % (k, v)) for k, v in settings)


def log_findings(text):
    """(lines saying the server reached a consistent state, error lines) of a server log."""
    lines = text.splitlines()
    consistent = [line for line in lines if LOG_CONSISTENT_RE.search(line)]
    errors = [line for line in lines if LOG_ERROR_RE.search(line)]
    return consistent, errors


def tail(text, lines=20):
    return '\n'.join(text.splitlines()[-lines:])


def read_record(path):
    """The record temp_postgres wrote when it started a server (a dict), or None."""
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def read_log(path):
    try:
        with open(path, errors='replace') as f:
            return f.read()
    except OSError:
        return ''


# -- the module's core -------------------------------------------------------------

class Server(object):
    """Start (``state=started``) or stop (``state=stopped``) the temporary server of temp_postgres.

    ``params``: temp_postgres's options; ``runner`` runs pg_ctl (inside the
    Alation shell and as the database OS user when it says so). It stops only
    servers it started: each start is recorded in socket_dir first.
    """

    def __init__(self, params, runner, check_mode=False):
        self.p = params
        self.runner = runner
        self.check_mode = check_mode
        self.pgdata = params['pgdata']
        self.socket_dir = params['socket_dir']
        self.host_pgdata = runner.host_path(self.pgdata)
        self.host_socket_dir = runner.host_path(self.socket_dir)
        self.record_path = os.path.join(self.host_socket_dir, RECORD)
        self.log_file = os.path.join(self.socket_dir, LOG)
        self.result = dict(changed=False, socket_dir=self.socket_dir, log_file=self.log_file,
                           executed_commands=runner.executed_commands)

    def run(self):
        """The result; raises RestoreError, with what is known (log_tail, stderr) in ``self.result``."""
        try:
            return self.start() if self.p['state'] == 'started' else self.stop()
        except OSError as e:
            raise RestoreError('%s the server on %s failed: %s'
                               % ('starting' if self.p['state'] == 'started' else 'stopping', self.host_pgdata, e))

    def fail(self, msg, **extra):
        self.result.update(extra)
        raise RestoreError(msg)

    def ours(self):
        """Whether the record in socket_dir says this module started a server on this pgdata."""
        record = read_record(self.record_path)
        return bool(record and record.get('pgdata') == self.pgdata)

    def pg_ctl(self, version):
        program, searched = find_program(self.runner, 'pg_ctl', self.p['bindir'], version=version)
        if not program:
            self.fail(not_found(self.runner, 'pg_ctl', searched,
                                'Install the PostgreSQL %s server or set bindir.' % (version or '')))
        return program

    def log_text(self):
        return read_log(os.path.join(self.host_socket_dir, LOG))

    def start(self):
        p = self.p
        version = pg_major_version(self.host_pgdata)
        if not version and self.check_mode:
            # In check mode the steps before did not restore it.
            self.result.update(changed=True, port=p['port'], pg_version=None,
                               executed_commands=['pg_ctl start on %s' % self.pgdata + NOT_RUN])
            return self.result
        if not version:
            self.fail('%s is not a PostgreSQL data directory (no PG_VERSION): restore it first' % self.host_pgdata)
        self.result['pg_version'] = version
        live = running_postmaster(self.host_pgdata)
        if live:
            if self.ours():
                record = read_record(self.record_path)
                self.result.update(port=record.get('port'), pid=live, consistent=record.get('consistent', []))
                return self.result
            self.fail('a PostgreSQL server (pid %d) already runs on %s and this module did not start it: it starts '
                      'and stops only servers of its own. Stop that server, or restore into another directory.'
                      % (live, self.host_pgdata))
        program = self.pg_ctl(version)
        port = p['port'] or free_port()
        settings = server_settings(self.pgdata, port, self.socket_dir, os.path.join(self.socket_dir, HBA),
                                   major=version, extra=p['settings'])
        argv = [program, '-D', self.pgdata, '-l', self.log_file, '-w', '-t', str(p['timeout']),
                '-o', postgres_options(settings), 'start']
        self.result.update(port=p['port'] if self.check_mode else port, changed=True)
        if self.check_mode:
            self.result['executed_commands'] = [self.runner.preview(argv)]
            return self.result

        run_as = p['run_as']
        uid, gid = Accounts(self.runner.chroot).user(run_as, 'run_as') if run_as else (os.geteuid(), os.getegid())
        make_private_dir(self.host_socket_dir, uid, gid, error=RestoreError)
        write_file(os.path.join(self.host_socket_dir, HBA), HBA_TEXT, 0o600, uid, gid)
        # Recorded before the start, so a start that fails half-way can still be stopped.
        record = dict(pgdata=self.pgdata, port=port, started=time.time())
        write_file(self.record_path, json.dumps(record), 0o600, uid, gid)
        started = time.monotonic()
        run = self.runner.run(argv)
        self.result['duration_s'] = round(time.monotonic() - started, 2)
        log = self.log_text()
        consistent, errors = log_findings(log)
        if run['rc'] != 0:
            self.fail('PostgreSQL did not start on %s: %s%s' % (
                self.host_pgdata, command_failure('pg_ctl start', run['rc'], run['stderr']),
                '; the server log says: %s' % ' | '.join(errors[-3:]) if errors else ''),
                log_tail=tail(log, 30), stderr=run['stderr'])
        record.update(pid=running_postmaster(self.host_pgdata), consistent=consistent)
        write_file(self.record_path, json.dumps(record), 0o600, uid, gid)
        self.result.update(pid=record['pid'], consistent=consistent)
        return self.result

    def stop(self):
        p = self.p
        live = running_postmaster(self.host_pgdata)
        if not live:
            return self.result
        if not self.ours():
            self.fail('the PostgreSQL server (pid %d) on %s was not started by this module with socket_dir %s: '
                      'it stops only servers of its own' % (live, self.host_pgdata, self.socket_dir))
        program = self.pg_ctl(pg_major_version(self.host_pgdata))
        self.result['changed'] = True
        if self.check_mode:
            return self.result
        started = time.monotonic()
        for mode in ('fast', 'immediate'):
            run = self.runner.run([program, '-D', self.pgdata, '-m', mode, '-w', '-t', str(p['timeout']), 'stop'])
            if run['rc'] == 0 or not running_postmaster(self.host_pgdata):
                break
        self.result['duration_s'] = round(time.monotonic() - started, 2)
        if running_postmaster(self.host_pgdata):
            self.fail('PostgreSQL on %s did not stop: %s'
                      % (self.host_pgdata, command_failure('pg_ctl stop', run['rc'], run['stderr'])),
                      log_tail=tail(self.log_text(), 30))
        os.unlink(self.record_path)
        return self.result
