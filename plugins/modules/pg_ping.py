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
  - With O(pg_probackup), also checks the pg_probackup binary the backup will run, found as
    M(alation.backup.pg_probackup) finds it (inside the Alation shell with O(chroot)) - that it is there, that it runs
    (C(--version)), and that it was built for the server's PostgreSQL major version, which is the only one it backs
    up. So a missing or wrong binary stops the run before anything is touched, not at the database step.
  - It only reads.
extends_documentation_fragment:
  - alation.backup.attributes
  - alation.backup.attributes.read_only
  - alation.backup.shell
  - alation.backup.runner
  - alation.backup.postgres
options:
  dbname:
    description: Database to connect to; V('') (unset) is the default too.
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
  pgdata:
    description:
      - The data directory the backup will read, as the server sees it (inside the Alation shell with O(chroot)).
      - When given, fail if the server on O(port) serves another one (C(SHOW data_directory)), naming both. A role
        that may not read C(data_directory) (neither superuser nor C(pg_read_all_settings)) skips this check.
    type: str
  pg_probackup:
    description: Also check the pg_probackup binary (see above).
    type: bool
    default: false
  pg_probackup_binary:
    description:
      - The pg_probackup binary, a name or a path inside O(chroot) (as M(alation.backup.pg_probackup)'s C(binary)).
        Omit to search PATH and the usual places for C(pg_probackup) and its versioned names.
    type: str
'''

EXAMPLES = r'''
- name: Fail early when Alation's PostgreSQL refuses the backup's replication connection
  alation.backup.pg_ping:
    host: 127.0.0.1
    port: 5432
    user: alation
    chroot: /opt/alation/alation
    run_as: alation

- name: Also fail early when the pg_probackup in the Alation shell is missing or built for another PostgreSQL
  alation.backup.pg_ping:
    port: 5432
    user: alation
    chroot: /opt/alation/alation
    run_as: alation
    pg_probackup: true
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
pg_probackup:
  description: With O(pg_probackup), the binary found (C(binary), as a path inside O(chroot)), its C(version) and the
    PostgreSQL major it was built for (C(pg_major)); null otherwise.
  returned: always
  type: dict
  sample: {binary: /usr/bin/pg_probackup-15, version: 2.5.15, pg_major: "15"}
executed_commands:
  description: The command lines run (the password is in the environment, never here).
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.alation.backup.plugins.module_utils._pg_inventory import (
    SERVER_VERSION_SQL, InventoryError, data_directory_problem, maintenance_db, psql_argument_spec, psql_client,
    replication_problem)
from ansible_collections.alation.backup.plugins.module_utils._pg_probackup import PgProbackupError, check_binary


def main():
    spec = psql_argument_spec(replication=dict(type='bool', default=True), pgdata=dict(type='str'),
                              pg_probackup=dict(type='bool', default=False), pg_probackup_binary=dict(type='str'))
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    p = module.params
    dbname = maintenance_db(p)
    try:
        runner, psql = psql_client(module)
    except InventoryError as e:
        module.fail_json(msg=str(e), changed=False, replication=None, pg_probackup=None)
    result = dict(changed=False, replication=None, pg_probackup=None, executed_commands=runner.executed_commands)
    try:
        result['server_version_num'] = psql.integer(dbname, SERVER_VERSION_SQL)
    except InventoryError as e:
        module.fail_json(msg='cannot connect to PostgreSQL: %s. Check host, port, user and password, and that the '
                             'server runs.' % e, **result)
    if p['replication']:
        problem = replication_problem(psql, dbname, p['host'], p['user'])
        if problem:
            module.fail_json(msg=problem, **result)
        result['replication'] = True
    problem = data_directory_problem(psql, dbname, p['pgdata']) if p['pgdata'] else None
    if problem:
        module.fail_json(msg=problem, **result)
    if p['pg_probackup']:
        try:
            result['pg_probackup'] = check_binary(runner, p['pg_probackup_binary'], result['server_version_num'],
                                                  setting='pg_probackup_binary (alation_backup_pg_probackup_binary)')
        except PgProbackupError as e:
            module.fail_json(msg=e.msg, **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
