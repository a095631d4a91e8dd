#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
module: pg_amcheck
short_description: Check every database of a PostgreSQL cluster for corruption with pg_amcheck
version_added: 0.2.0
author: alation.backup maintainers (@alation-backup)
description:
  - Runs C(pg_amcheck --all) (PostgreSQL 14 and later) over every database that allows connections. Heap
    tables and B-tree indexes are read and checked page by page. The restore drill runs it on the
    temporary cluster it restored.
  - pg_amcheck needs the C(amcheck) extension (in C(postgresql-contrib)) in each database. With
    O(install_missing) the module installs it where it is missing and removes it again afterwards, so the
    databases are left as they were.
  - Fails when pg_amcheck reports corruption, naming the first places found.
extends_documentation_fragment:
  - alation.backup.attributes
  - alation.backup.postgres
  - alation.backup.shell
  - alation.backup.runner
  - alation.backup.lease
options:
  dbname:
    description: Database to connect to first (pg_amcheck's C(--maintenance-db)); V('') (unset) is the default too.
    type: str
    default: postgres
    aliases: [db, login_db]
  bindir:
    description:
      - Directory holding C(pg_amcheck) and C(psql). Omit to search PATH and the usual PostgreSQL directories.
    type: path
  install_missing:
    description:
      - Install the C(amcheck) extension (into C(pg_catalog)) where it is missing, and remove it again after
        the check. Needs a superuser.
    type: bool
    default: true
  heapallindexed:
    description:
      - Also check that every heap tuple is in each index (C(--heapallindexed)). Reads the tables once more per
        index; slower.
    type: bool
    default: false
  threads:
    description: Connections pg_amcheck uses at once (C(--jobs)). C(jobs) is an alias (0.1.0's name).
    aliases: [jobs]
    type: int
    default: 1
  if_missing:
    description:
      - What to do when C(pg_amcheck) is not installed (PostgreSQL before 14). V(fail) fails the task; V(skip)
        returns RV(available=false) and checks nothing.
    type: str
    choices: [fail, skip]
    default: fail
attributes:
  check_mode:
    support: full
    details: Says what it would run; connects to nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
'''

EXAMPLES = r'''
- name: Check the restored cluster for corruption
  alation.backup.pg_amcheck:
    host: /data2/restore_drill/socket
    port: 54329
    user: alation
    run_as: alation
'''

RETURN = r'''
databases:
  description: The databases checked.
  returned: success or corruption found
  type: list
  elements: str
problems:
  description: What pg_amcheck reported, one item a place (relation, block, offset and what is wrong); at most 50.
  returned: always
  type: list
  elements: str
problem_count:
  description: How many places pg_amcheck reported.
  returned: always
  type: int
available:
  description: Whether C(pg_amcheck) was found (false only with O(if_missing=skip)).
  returned: always
  type: bool
installed:
  description: Databases where the amcheck extension was installed for the check (and removed afterwards).
  returned: always
  type: list
  elements: str
executed_commands:
  description: The command lines run.
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.alation.backup.plugins.module_utils import _locks
from ansible_collections.alation.backup.plugins.module_utils._pg_inventory import (
    AMCHECK_INSTALL_SQL,
    AMCHECK_INSTALLED_SQL,
    AMCHECK_REMOVE_SQL,
    LIST_CONNECTABLE_SQL,
    InventoryError,
    Psql,
    amcheck_problems,
    maintenance_db,
    psql_argument_spec,
)
from ansible_collections.alation.backup.plugins.module_utils._host import command_failure
from ansible_collections.alation.backup.plugins.module_utils._postgres import connection_argv, connection_env
from ansible_collections.alation.backup.plugins.module_utils._runner import Runner, find_program, not_found

MAX_PROBLEMS = 50


def main():
    argument_spec = psql_argument_spec(
        install_missing=dict(type='bool', default=True),
        heapallindexed=dict(type='bool', default=False),
        threads=dict(type='int', default=1, aliases=['jobs']),
        if_missing=dict(type='str', choices=['fail', 'skip'], default='fail'),
        **_locks.lease_argument_spec()
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    runner = Runner(module, chroot=p['chroot'], run_as=p['run_as'])
    result = dict(changed=False, available=True, problems=[], problem_count=0, installed=[],
                  executed_commands=runner.executed_commands)

    programs = {}
    for name in ('pg_amcheck', 'psql'):
        programs[name], searched = find_program(runner, name, p['bindir'])
        if not programs[name] and p['if_missing'] == 'skip' and name == 'pg_amcheck':
            result.update(available=False, msg='pg_amcheck not found in %s: nothing checked' % ', '.join(searched))
            module.exit_json(**result)
        if not programs[name]:
            module.fail_json(msg=not_found(runner, name, searched, 'pg_amcheck comes with PostgreSQL 14 and later; '
                                                                   'set bindir to its directory.'), **result)
    conn = connection_argv(dict(p, dbname=None))
    argv = [programs['pg_amcheck'], '--all', '--maintenance-db=%s' % maintenance_db(p), '--jobs=%d' % max(1, p['threads']),
            '--no-password'] + conn + (['--heapallindexed'] if p['heapallindexed'] else [])
    if module.check_mode:
        result['executed_commands'] = [runner.preview(argv)]
        module.exit_json(**result)

    psql = Psql(runner, programs['psql'], conn, connection_env(p))
    try:
        databases = psql.json(maintenance_db(p), LIST_CONNECTABLE_SQL)
        if p['install_missing']:
            for name in databases:
                if psql.integer(name, AMCHECK_INSTALLED_SQL) == 0:
                    psql.query(name, AMCHECK_INSTALL_SQL)
                    result['installed'].append(name)
    except InventoryError as e:
        module.fail_json(msg='cannot prepare the check: %s' % e, **result)
    result['databases'] = databases

    lease = _locks.leased(module, 'checking further')
    try:
        with lease:
            run = runner.run(argv, env=connection_env(p))
    finally:
        # Leave every database as it was, also when pg_amcheck failed.
        for name in result['installed']:
            try:
                psql.query(name, AMCHECK_REMOVE_SQL)
            except InventoryError as e:
                module.warn('could not remove the amcheck extension installed in %s for the check: %s' % (name, e))

    problems = amcheck_problems(run['stdout'])
    result.update(problems=problems[:MAX_PROBLEMS], problem_count=len(problems), rc=run['rc'])
    if problems:
        lease.fail_json('pg_amcheck found corruption in %d place(s) of %s; first: %s'
                        % (len(problems), ', '.join(databases), '; '.join(problems[:3])), **result)
    if run['rc'] != 0:
        lease.fail_json(command_failure('pg_amcheck', run['rc'], run['stderr'], limit=1), stderr=run['stderr'], **result)
    lease.exit_json(**result)


if __name__ == '__main__':
    main()
