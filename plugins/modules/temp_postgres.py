#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: temp_postgres
short_description: Start or stop a temporary PostgreSQL server on a restored data directory, apart from the live one
version_added: 0.1.0
author: alation.backup maintainers (@alation-backup)
description:
  - Starts PostgreSQL with C(pg_ctl) on a restored data directory, as the database OS user, so that the restore
    drill can check it; and stops it again. Safe beside a live cluster on the same host.
  - The server listens on 127.0.0.1 only, on a free port chosen at run time (or O(port)), and puts its socket in
    O(socket_dir) (made 0700 for O(run_as)). Its own C(pg_hba.conf) there admits only local socket connections,
    so only O(run_as) (and root) can connect.
  - Settings that could reach the live cluster's files are overridden on the command line (they win over the
    data directory's C(postgresql.conf)) - C(data_directory), C(external_pid_file), C(archive_mode=off),
    C(restore_command), C(primary_conninfo), C(stats_temp_directory) before 15 - as are C(shared_buffers=128MB),
    C(huge_pages=off), C(ssl=off) and C(logging_collector=off) (the log goes to O(socket_dir)). Anything else is
    as in the backup, so the server starts as production would. O(settings) adds or overrides more.
  - O(state=started) waits until the server accepts connections, which it does only once recovery has reached a
    consistent state; the result quotes the server log's lines that say so.
  - The module stops only servers it started. It records each in C(temp_postgres.json) in O(socket_dir) and
    refuses to start on, or stop, a data directory that another server runs on.
extends_documentation_fragment:
  - alation.backup.attributes
  - alation.backup.runner
options:
  pgdata:
    description: The data directory, as seen by the programs (inside O(chroot) when set).
    type: path
    required: true
  socket_dir:
    description:
      - Directory for the server's socket, its C(pg_hba.conf), its log and the module's record, as seen by the
        programs. Made when missing (mode 0700, owned by O(run_as)). Keep one per server.
    type: path
    required: true
  state:
    description: V(started) starts the server (nothing happens when this module already runs it); V(stopped) stops it.
    type: str
    choices: [started, stopped]
    default: started
  port:
    description: TCP port on 127.0.0.1. V(0) lets the module pick a free one when it starts the server.
    type: int
    default: 0
  bindir:
    description:
      - Directory holding C(pg_ctl) and C(postgres). Omit to search PATH and the usual PostgreSQL directories,
        the directories of the data directory's own major version (C(PG_VERSION)) first.
    type: path
  settings:
    description: More server settings, passed as C(-c name=value); they override the module's own.
    type: dict
    default: {}
  timeout:
    description: Seconds to wait for the server to start (recovery included) or to stop.
    type: int
    default: 300
attributes:
  check_mode:
    support: full
    details: Says what it would start or stop; starts and stops nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
'''

EXAMPLES = r'''
- name: Start PostgreSQL on the restored data directory
  alation.backup.temp_postgres:
    pgdata: /data2/restore_drill/pgdata
    socket_dir: /data2/restore_drill/socket
    chroot: /opt/alation/alation
    run_as: alation
  register: server

- name: Stop it
  alation.backup.temp_postgres:
    pgdata: /data2/restore_drill/pgdata
    socket_dir: /data2/restore_drill/socket
    state: stopped
    chroot: /opt/alation/alation
    run_as: alation
'''

RETURN = r'''
port:
  description: The port the server listens on (127.0.0.1 and the socket in O(socket_dir)).
  returned: state=started
  type: int
  sample: 41873
socket_dir:
  description: Where the socket is; connect with C(host=<socket_dir>) and RV(port).
  returned: always
  type: str
pid:
  description: The postmaster's process id.
  returned: state=started, not in check mode
  type: int
pg_version:
  description: The data directory's major version (C(PG_VERSION)).
  returned: state=started
  type: str
consistent:
  description: The server log's lines saying that recovery reached a consistent state and the server is ready.
  returned: state=started, not in check mode
  type: list
  elements: str
log_file:
  description: The server's log, as seen by the programs.
  returned: always
  type: str
log_tail:
  description: The last lines of the server log.
  returned: on failure to start or stop
  type: str
duration_s:
  description: Seconds the start (recovery included) or the stop took.
  returned: when something was started or stopped
  type: float
executed_commands:
  description: The command lines run.
  returned: always
  type: list
  elements: str
'''

import json
import os
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.alation.backup.plugins.module_utils._restore import (
    RestoreError,
    free_port,
    log_findings,
    make_private_dir,
    pg_major_version,
    postgres_options,
    running_postmaster,
    server_settings,
    tail,
    user_ids,
    write_private_file,
)
from ansible_collections.alation.backup.plugins.module_utils._runner import Runner, find_program, runner_argument_spec

RECORD = 'temp_postgres.json'
HBA = 'pg_hba.conf'
LOG = 'postgresql.log'
# Only local socket connections, in a directory only the database OS user can enter.
HBA_TEXT = '# Written by alation.backup.temp_postgres: local socket connections only.\nlocal all all trust\n'


def read_record(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def read_log(path):
    try:
        with open(path, errors='replace') as f:
            return f.read()
    except OSError:
        return ''


class Server(object):
    def __init__(self, module, runner):
        self.module = module
        self.runner = runner
        p = module.params
        self.pgdata = p['pgdata']
        self.socket_dir = p['socket_dir']
        self.host_pgdata = runner.host_path(self.pgdata)
        self.host_socket_dir = runner.host_path(self.socket_dir)
        self.record_path = os.path.join(self.host_socket_dir, RECORD)
        self.log_file = os.path.join(self.socket_dir, LOG)
        self.result = dict(changed=False, socket_dir=self.socket_dir, log_file=self.log_file,
                           executed_commands=runner.executed_commands)

    def fail(self, msg, **extra):
        self.result.update(extra)
        self.module.fail_json(msg=msg, **self.result)

    def ours(self):
        """Whether the record in socket_dir says this module started a server on this pgdata."""
        record = read_record(self.record_path)
        return bool(record and record.get('pgdata') == self.pgdata)

    def pg_ctl(self, version):
        program, searched = find_program(self.runner, 'pg_ctl', self.module.params['bindir'], version=version)
        if not program:
            self.fail('pg_ctl not found; looked in %s. Install the PostgreSQL %s server or set bindir.'
                      % (', '.join(searched), version or ''))
        return program

    def log_tail(self):
        return tail(read_log(os.path.join(self.host_socket_dir, LOG)), 30)

    def start(self):
        p = self.module.params
        version = pg_major_version(self.host_pgdata)
        if not version and self.module.check_mode:
            # In check mode the steps before did not restore it.
            self.result.update(changed=True, port=p['port'], pg_version=None,
                               executed_commands=['pg_ctl start on %s  (check mode: not run)' % self.pgdata])
            self.module.exit_json(**self.result)
        if not version:
            self.fail('%s is not a PostgreSQL data directory (no PG_VERSION): restore it first' % self.host_pgdata)
        self.result['pg_version'] = version
        live = running_postmaster(self.host_pgdata)
        if live:
            if self.ours():
                record = read_record(self.record_path)
                self.result.update(port=record.get('port'), pid=live, consistent=record.get('consistent', []))
                self.module.exit_json(**self.result)
            self.fail('a PostgreSQL server (pid %d) already runs on %s and this module did not start it: it starts '
                      'and stops only servers of its own. Stop that server, or restore into another directory.'
                      % (live, self.host_pgdata))
        program = self.pg_ctl(version)
        port = p['port'] or free_port()
        settings = server_settings(self.pgdata, port, self.socket_dir, os.path.join(self.socket_dir, HBA),
                                   major=version, extra=p['settings'])
        argv = [program, '-D', self.pgdata, '-l', self.log_file, '-w', '-t', str(p['timeout']),
                '-o', postgres_options(settings), 'start']
        self.result.update(port=p['port'] if self.module.check_mode else port, changed=True)
        if self.module.check_mode:
            self.result['executed_commands'] = [' '.join(argv) + '  (check mode: not run)']
            self.module.exit_json(**self.result)

        uid, gid = user_ids(p['run_as'], self.runner.chroot)
        make_private_dir(self.host_socket_dir, uid, gid)
        write_private_file(os.path.join(self.host_socket_dir, HBA), HBA_TEXT, uid, gid)
        # Recorded before the start, so a start that fails half-way can still be stopped.
        record = dict(pgdata=self.pgdata, port=port, started=time.time())
        write_private_file(self.record_path, json.dumps(record), uid, gid)
        started = time.monotonic()
        run = self.runner.run(argv)
        self.result['duration_s'] = round(time.monotonic() - started, 2)
        log = read_log(os.path.join(self.host_socket_dir, LOG))
        consistent, errors = log_findings(log)
        if run['rc'] != 0:
            self.fail('PostgreSQL did not start on %s (pg_ctl exit %d): %s' % (
                self.host_pgdata, run['rc'], ' | '.join(errors[-3:]) or run['stderr'].strip() or 'see log_tail'),
                log_tail=tail(log, 30), stderr=run['stderr'])
        record.update(pid=running_postmaster(self.host_pgdata), consistent=consistent)
        write_private_file(self.record_path, json.dumps(record), uid, gid)
        self.result.update(pid=record['pid'], consistent=consistent)
        self.module.exit_json(**self.result)

    def stop(self):
        p = self.module.params
        live = running_postmaster(self.host_pgdata)
        if not live:
            self.module.exit_json(**self.result)
        if not self.ours():
            self.fail('the PostgreSQL server (pid %d) on %s was not started by this module with socket_dir %s: '
                      'it stops only servers of its own' % (live, self.host_pgdata, self.socket_dir))
        program = self.pg_ctl(pg_major_version(self.host_pgdata))
        self.result['changed'] = True
        if self.module.check_mode:
            self.module.exit_json(**self.result)
        started = time.monotonic()
        for mode in ('fast', 'immediate'):
            run = self.runner.run([program, '-D', self.pgdata, '-m', mode, '-w', '-t', str(p['timeout']), 'stop'])
            if run['rc'] == 0 or not running_postmaster(self.host_pgdata):
                break
        self.result['duration_s'] = round(time.monotonic() - started, 2)
        if running_postmaster(self.host_pgdata):
            self.fail('PostgreSQL on %s did not stop (pg_ctl exit %d): %s' % (self.host_pgdata, run['rc'],
                                                                              run['stderr'].strip()),
                      log_tail=self.log_tail())
        os.unlink(self.record_path)
        self.module.exit_json(**self.result)


def main():
    argument_spec = dict(
        pgdata=dict(type='path', required=True),
        socket_dir=dict(type='path', required=True),
        state=dict(type='str', choices=['started', 'stopped'], default='started'),
        port=dict(type='int', default=0),
        bindir=dict(type='path'),
        settings=dict(type='dict', default={}),
        timeout=dict(type='int', default=300),
    )
    argument_spec.update(runner_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    server = Server(module, Runner(module, chroot=module.params['chroot'], run_as=module.params['run_as']))
    try:
        if module.params['state'] == 'started':
            server.start()
        else:
            server.stop()
    except RestoreError as e:
        server.fail(str(e))


if __name__ == '__main__':
    main()
