#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
module: pg_inventory
short_description: List a PostgreSQL cluster's databases and count their tables (read-only)
version_added: 0.2.0
author: alation.backup maintainers (@alation-backup)
description:
  - Runs C(psql) and returns every database that allows connections and is not a template, with its number of
    tables (ordinary and partitioned tables outside C(pg_catalog), C(information_schema) and the TOAST schemas).
  - The backup role records this in the archive's manifest; the restore drill reads the restored cluster with it
    and compares (O(expected)).
  - Only reads. A database it cannot connect to is listed in RV(unreachable) rather than failing the task; the
    task fails when the list of databases itself cannot be read.
extends_documentation_fragment:
  - alation.backup.attributes
  - alation.backup.attributes.read_only
  - alation.backup.postgres
  - alation.backup.shell
  - alation.backup.runner
options:
  dbname:
    description: Database to read the list of databases from; V('') (unset) is the default too.
    type: str
    default: postgres
    aliases: [db, login_db]
  bindir:
    description:
      - Directory holding C(psql). Omit to search PATH, then C(/usr/lib/postgresql/<newest>/bin) and C(/usr/pgsql-<newest>/bin).
    type: path
  expected:
    description:
      - A record of an earlier inventory (RV(databases) of an earlier run, as the manifest keeps it) to compare
        with. The result's RV(comparison) then says whether every database recorded exists and has the number of
        tables recorded.
    type: dict
'''

EXAMPLES = r'''
- name: Count the tables of every database
  alation.backup.pg_inventory:
    host: 127.0.0.1
    port: 5432
    user: alation
    chroot: /opt/alation/alation
    run_as: alation
  register: inventory

- name: Compare a restored cluster with what the archive recorded
  alation.backup.pg_inventory:
    host: /data2/restore_drill/socket
    port: 54329
    user: alation
    run_as: alation
    expected: "{{ manifest.databases }}"
  register: restored
'''

RETURN = r'''
databases:
  description: Each database that allows connections and is not a template, with its number of tables.
  returned: success
  type: dict
  sample: {"alation": {"tables": 812}, "postgres": {"tables": 0}}
unreachable:
  description: Databases listed but not readable, with the reason.
  returned: success
  type: dict
  sample: {"reporting": "psql on database reporting failed (exit 2): FATAL:  permission denied for database"}
server_version_num:
  description: The server's C(server_version_num).
  returned: success
  type: int
  sample: 150018
comparison:
  description:
    - With O(expected), two checks, C(databases) (every database recorded exists) and C(table_counts) (each has
      the number of tables recorded). Each has C(result) (ok, failed or skipped) and C(detail).
  returned: when O(expected) is given
  type: dict
  sample: {"databases": {"result": "ok", "detail": "all 1 databases recorded exist: postgres", "missing": []},
           "table_counts": {"result": "ok", "detail": "postgres: 4", "mismatches": {}}}
executed_commands:
  description: The psql command lines run (the password is in the environment, never here).
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.alation.backup.plugins.module_utils._pg_inventory import (
    InventoryError, compare, inventory, maintenance_db, psql_argument_spec, psql_client)


def main():
    module = AnsibleModule(argument_spec=psql_argument_spec(expected=dict(type='dict')), supports_check_mode=True)
    p = module.params
    try:
        runner, client = psql_client(module)
    except InventoryError as e:
        module.fail_json(msg=str(e), changed=False)
    result = dict(changed=False, executed_commands=runner.executed_commands)
    try:
        result.update(inventory(client, maintenance_db(p)))
    except InventoryError as e:
        module.fail_json(msg='cannot list the databases: %s. Check the connection options (host, port, user) '
                             'and that the server runs.' % e, stderr=e.result.get('stderr', ''), **result)
    for name, why in sorted(result['unreachable'].items()):
        module.warn('database %s was not counted: %s' % (name, why))
    if p['expected'] is not None:
        result['comparison'] = compare(p['expected'], result['databases'], result['unreachable'])
    module.exit_json(**result)


if __name__ == '__main__':
    main()
