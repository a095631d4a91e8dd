#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
module: pg_ping
short_description: Check that the backup can reach PostgreSQL, replication connection included
version_added: 0.2.0
author: alation.backup maintainers (@alation-backup)
description:
  - Connects with C(psql) as the backup will, and reads the server version.
  - With O(replication), also opens a physical replication connection (C(IDENTIFY_SYSTEM)), which
    C(pg_probackup --stream) and C(pg_basebackup) need. Without a C(pg_hba.conf) entry for it they fail only after
    the backup has begun; this fails first, saying which line to add.
  - It only reads.
extends_documentation_fragment:
  - alation.backup.attributes
  - alation.backup.runner
  - alation.backup.postgres
options:
  dbname:
    description: Database to connect to.
    type: str
    default: postgres
    aliases: [db, login_db]
  replication:
    description: Also check that O(user) may open a replication connection.
    type: bool
    default: true
  bindir:
    description: Directory holding C(psql). Omit to search PATH and the usual PostgreSQL directories.
    type: path
attributes:
  check_mode:
    support: full
    details: It only reads, so it runs the same in check mode.
  diff_mode:
    support: none
  platform:
    platforms: posix
'''

EXAMPLES = r'''
- name: Fail early when Alation's PostgreSQL refuses the backup's replication connection
  alation.backup.pg_ping:
    host: 127.0.0.1
    port: 5432
    user: alation
    chroot: /opt/alation/alation
    run_as: alation
'''

RETURN = r'''
server_version_num:
  description: The server's version number (C(server_version_num)).
  returned: success
  type: int
  sample: 150018
replication:
  description: Whether a replication connection was opened (null when not checked).
  returned: always
  type: bool
executed_commands:
  description: The command lines run (the password is in the environment, never here).
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.alation.backup.plugins.module_utils._pg_inventory import (
    SERVER_VERSION_SQL, InventoryError, Psql, replication_problem)
from ansible_collections.alation.backup.plugins.module_utils._postgres import (
    connection_argv, connection_env, postgres_argument_spec)
from ansible_collections.alation.backup.plugins.module_utils._runner import (
    Runner, find_program, not_found, runner_argument_spec)


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(runner_argument_spec())
    argument_spec.update(
        dbname=dict(type='str', default='postgres', aliases=['db', 'login_db']),
        replication=dict(type='bool', default=True),
        bindir=dict(type='path'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    runner = Runner(module, chroot=p['chroot'], run_as=p['run_as'])
    result = dict(changed=False, replication=None, executed_commands=runner.executed_commands)
    program, searched = find_program(runner, 'psql', p['bindir'])
    if not program:
        module.fail_json(msg=not_found(runner, 'psql', searched, 'Install the PostgreSQL client or set bindir.'),
                         **result)
    psql = Psql(runner, program, connection_argv(dict(p, dbname=None)), connection_env(p))
    try:
        result['server_version_num'] = psql.integer(p['dbname'], SERVER_VERSION_SQL)
    except InventoryError as e:
        module.fail_json(msg='cannot connect to PostgreSQL: %s. Check host, port, user and password, and that the '
                             'server runs.' % e, **result)
    if p['replication']:
        problem = replication_problem(psql, p['dbname'], p['host'], p['user'])
        if problem:
            module.fail_json(msg=problem, **result)
        result['replication'] = True
    module.exit_json(**result)


if __name__ == '__main__':
    main()
