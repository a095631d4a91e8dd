#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
module: temp_postgres
short_description: Start or stop a temporary PostgreSQL server on a restored data directory, apart from the live one
version_added: 0.2.0
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
  - alation.backup.shell
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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.alation.backup.plugins.module_utils._host import HostError
from ansible_collections.alation.backup.plugins.module_utils._pg_server import Server
from ansible_collections.alation.backup.plugins.module_utils._runner import Runner, runner_argument_spec


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
    runner = Runner(module, chroot=module.params['chroot'], run_as=module.params['run_as'])
    server = Server(module.params, runner, check_mode=module.check_mode)
    try:
        result = server.run()
    except HostError as e:
        module.fail_json(msg=str(e), **server.result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
