#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
---
module: pg_probackup
short_description: Stage a PostgreSQL backup with pg_probackup in the pg staging dir, keeping the catalog usable
version_added: 0.2.0
author: alation.backup maintainers (@alation-backup)
description:
  - Takes a backup of Alation's PostgreSQL with C(pg_probackup) 2.5 into a catalog (the pg staging dir),
    initialising the catalog and adding the instance when they are missing.
  - Chooses FULL or incremental by itself (O(backup_mode=auto)) and recovers from a broken chain (a killed or
    failed earlier backup) as O(on_broken_chain) says.
  - Bounds the incremental chain (O(full_every), O(full_every_days)); once a new FULL is validated, the older chain
    is deleted from the catalog with C(pg_probackup delete -i), so the catalog holds one FULL and the incrementals
    since it.
  - Serialises every pg_probackup command on one catalog under an exclusive lock of its own, because
    pg_probackup has none (a C(validate) run beside a backup marks the good backup ERROR).
  - Also reads the catalog (O(state=show)), validates the newest backup (O(state=validate)) and removes the
    catalog (O(state=absent)).
extends_documentation_fragment:
  - alation.backup.attributes
  - alation.backup.shell
  - alation.backup.runner
  - alation.backup.postgres
  - alation.backup.postgres.password_file
  - alation.backup.lease
  - alation.backup.controller
options:
  catalog:
    description:
      - The pg_probackup catalog directory (the pg staging dir), as a path inside O(chroot).
      - With O(state=backup) a missing catalog directory is made (its missing parents as C(mkdir -p) makes them),
        mode 0700, owned by O(run_as) (in O(chroot), the Alation shell's account of that name) and its primary group,
        under the path rules of M(alation.backup.staging_dir) (O(allowed_roots)). An existing one is left as it is.
      - For the other states its parent directory must exist.
      - The lock file is C(.<name>.lock) in that parent, beside the catalog (inside it, a reset would delete it). It
        exists only while a command runs; the module removes it when done (one left by a killed run goes with the
        next).
    type: path
    required: true
  instance:
    description:
      - Name of the backup instance in the catalog.
    type: str
    default: alation
  pgdata:
    description:
      - Data directory of the PostgreSQL server, as a path inside O(chroot).
      - Needed when the instance must be added to the catalog (first run, or after a reset; a reset reuses the
        instance's configured one when this is omitted). When set, it is also passed to C(backup) with C(-D).
    type: path
  state:
    description:
      - V(backup) makes sure the catalog is initialised and the instance added (only when missing), recovers a
        broken chain as O(on_broken_chain) says, then takes a backup and validates it (O(validate)).
      - V(show) only reads the catalog with C(pg_probackup show) (works while a backup runs, takes no lock) and
        returns it, with the mode the next O(state=backup) run would take. (Not C(info), which ansible-test
        does not allow as a state.)
      - V(validate) validates the newest OK or DONE backup by its id (C(validate -i ID)); an instance-wide
        validate fails on any leftover ERROR entry even when every OK backup is fine.
      - V(absent) removes the catalog directory (used when incremental backups are off). It refuses a
        directory that does not look like a pg_probackup catalog (no C(backups/) and C(wal/), and not empty),
        a symlink, and a catalog in which a backup is running. Symlinks inside are removed, never followed.
    type: str
    choices: [backup, show, validate, absent]
    default: backup
  backup_mode:
    description:
      - V(auto) takes an incremental (O(incremental_mode)) when the newest backup is OK or DONE and every
        parent down to its FULL is OK or DONE; a FULL otherwise. The result's RV(reason) says why.
      - V(full), V(delta), V(page), V(ptrack) force the mode. An incremental with no valid backup to build on
        fails before anything runs (pg_probackup would fail too and leave an ERROR entry).
    type: str
    choices: [auto, full, delta, page, ptrack]
    default: auto
  full_every:
    description:
      - With O(backup_mode=auto), take a FULL instead of an incremental once the chain since its FULL holds this
        many backups, the FULL included. The default 7 is a FULL, then at most 6 incrementals.
      - V(0) never forces a FULL by count. Whichever of this and O(full_every_days) comes first wins.
      - While O(full_every) or O(full_every_days) is set, a FULL that O(backup_mode=auto) takes (for either rule, or
        because the chain was broken) deletes, once it is validated and OK, every older backup of the instance
        from the catalog with C(pg_probackup delete -i ID) (a FULL goes with its incrementals), never by deleting
        files. The catalog, and so each archive made from it, then holds one FULL and the incrementals since it,
        and restores on its own. With both V(0) nothing is ever deleted and the chain grows without bound.
    type: int
    default: 7
  full_every_days:
    description:
      - With O(backup_mode=auto), take a FULL instead of an incremental once the chain's FULL started this many
        days ago or more (fractions allowed, from C(start-time) of C(show) and the host's clock).
      - V(0) never forces a FULL by age. See O(full_every) for what happens to the older chain.
    type: float
    default: 7
  incremental_mode:
    description:
      - The incremental mode O(backup_mode=auto) takes.
      - V(page) needs continuous WAL archiving to the catalog; V(ptrack) needs the ptrack extension.
    type: str
    choices: [delta, page, ptrack]
    default: delta
  on_broken_chain:
    description:
      - What to do when the newest backup is ERROR, CORRUPT, ORPHAN, or RUNNING with no live process behind
        its C(backup.pid) (a killed backup stays RUNNING forever).
      - V(reset) empties the catalog (keeping its directory), initialises it again and takes a FULL.
        Every earlier backup in it is gone.
      - V(repair) deletes the broken entries (C(delete --status=ERROR|CORRUPT|ORPHAN|RUNNING)) and goes on
        from the newest valid backup; O(backup_mode=auto) then takes an incremental if that one is OK or DONE
        with a valid chain.
      - V(fail) stops and says which backup is broken and what to run.
      - A RUNNING entry whose process is alive is another backup in flight; the module then always refuses
        and never touches it.
    type: str
    choices: [reset, repair, fail]
    default: reset
  stream:
    description:
      - Stream the WAL the backup needs over a replication connection (C(--stream)), so the backup restores on
        its own. The server must allow a replication connection for O(user).
      - With C(--stream) every backup takes at least about 10 seconds, whatever its size (pg_probackup's WAL
        streaming notices the end of the backup only at its 10 s status interval).
      - Without it, the server must archive WAL into the catalog (C(archive_command) with
        C(pg_probackup archive-push)).
    type: bool
    default: true
  threads:
    description:
      - Parallel threads for backup and validate (C(-j)). Defaults to the host's CPU count.
    type: int
  compress_algorithm:
    description:
      - Compression of the files in the catalog (C(--compress-algorithm)).
      - Default V(none) because the archive step packs and compresses the staging dirs afterwards;
        compressing twice costs time for nothing.
    type: str
    choices: [none, zlib, pglz]
    default: none
  compression_level:
    description:
      - Compression level 0-9 (C(--compress-level)), with O(compress_algorithm) other than V(none).
    aliases: [compress_level]
    type: int
  validate:
    description:
      - Validate the new backup by its id after taking it (C(validate -i ID)); its status becomes OK.
      - Without, the backup is left DONE (complete, not validated). Either is a valid parent for an incremental.
    type: bool
    default: true
  lock_timeout:
    description:
      - Seconds to wait for the catalog's lock when another run of this module holds it. V(0) fails at once,
        with the holder's pid in the message.
    type: int
    default: 0
  fresh:
    description:
      - With O(state=backup), remove the catalog first, exactly as O(state=absent) does (refusing a directory that is
        no catalog and a catalog a backup is running in), then back up into a new catalog (a FULL). For backups
        without an incremental chain. Needs O(pgdata).
      - In check mode nothing is removed; the result says what would be taken in the new catalog.
    type: bool
    default: false
  inventory:
    description:
      - With O(state=backup), count the tables of every database right after the backup, as
        M(alation.backup.pg_inventory) does (with C(psql), over the same connection, O(dbname) as the database
        that lists the others), into RV(databases).
      - A count that fails never fails the backup; RV(databases_error) says why.
    type: bool
    default: false
  allowed_roots:
    description:
      - Directories below which the catalog may be made, emptied or removed even when it is directly inside a system
        directory, as for M(alation.backup.staging_dir).
    type: list
    elements: path
    default: []
  binary:
    description:
      - The pg_probackup program, as a path inside O(chroot) or a name to search for.
      - Default searches C(pg_probackup), then the versioned names C(pg_probackup-18) down to C(pg_probackup-11),
        in E(PATH), the standard system directories and the PostgreSQL program directories
        (C(/usr/lib/postgresql/*/bin), C(/usr/pgsql-*/bin)); inside O(chroot), in the chroot's standard directories
        C(/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin) and its PostgreSQL program directories.
    type: str
  bindir:
    description:
      - Directory holding C(psql), used only by O(inventory); omit to search E(PATH), then
        C(/usr/lib/postgresql/<newest>/bin) and C(/usr/pgsql-<newest>/bin) (inside O(chroot) when set).
      - pg_probackup itself is found through O(binary), not here. As for the other modules of the
        C(group/alation.backup.postgres) action group, C(module_defaults) can set it for the whole group.
    type: path
notes:
  - A backup this run started that fails (server down, wrong role or database, killed) leaves an ERROR entry in
    the catalog; the module deletes that entry at once (C(delete -i ID), only when C(show) reports it failed),
    so the chain stays clean and the next run does not take a passing outage for a broken chain (which the
    default O(on_broken_chain=reset) would answer by emptying the catalog). The result's RV(discarded) says so.
  - pg_probackup warns on every run about missing data checksums and running as superuser; warnings are
    returned in RV(tool_warnings) and do not fail the task.
  - pg_probackup reads PGDATA directly, so O(run_as) should be the owner of PGDATA (usually C(postgres)); the
    catalog is then owned by that user too.
  - Backup ids have one-second resolution; the new backup is identified by the id pg_probackup logs for it,
    not by being the newest entry.
  - The older chain goes only once the new FULL is validated (status OK); with O(validate=false) it is kept and
    RV(prune_error) says so. A delete that fails does not fail the task (the new FULL is good); it warns, and the
    next FULL that validates tries again. Only entries older than the new FULL go; a backup running in a live
    process is never touched.
seealso:
  - name: pg_probackup documentation
    description: The tool's own reference.
    link: https://postgrespro.github.io/pg_probackup/
attributes:
  check_mode:
    support: full
    details:
      - Reports the mode that would be taken, the recovery that would run and the backups a new FULL would delete
        (RV(pruned)); only a read-only C(show) (and C(show-config)) runs.
      - No lock is taken and no lock file is created.
  diff_mode:
    support: none
  platform:
    platforms: posix'''

EXAMPLES = r'''
- name: Stage the PostgreSQL backup (FULL the first time, DELTA afterwards)
  alation.backup.pg_probackup:
    catalog: /data2/backup/pgbackup
    pgdata: /data/pgsql/data
    chroot: /opt/alation/alation
    run_as: postgres
    host: 127.0.0.1
    port: 5432
    user: postgres
    dbname: postgres
  register: pg_backup

- name: Show what was taken
  ansible.builtin.debug:
    msg: "{{ pg_backup.mode_taken }} {{ pg_backup.backup.id }}: {{ pg_backup.reason }}"

- name: A FULL every 14 backups or every 14 days, whichever comes first; the older chain then goes
  alation.backup.pg_probackup:
    catalog: /data2/backup/pgbackup
    pgdata: /data/pgsql/data
    run_as: postgres
    full_every: 14
    full_every_days: 14

- name: Fail instead of resetting when a backup was killed last time
  alation.backup.pg_probackup:
    catalog: /data2/backup/pgbackup
    pgdata: /data/pgsql/data
    run_as: postgres
    on_broken_chain: fail
    lock_timeout: 600

- name: Read the catalog
  alation.backup.pg_probackup:
    catalog: /data2/backup/pgbackup
    run_as: postgres
    state: show
  register: catalog_info

- name: Remove the catalog when incremental backups are off
  alation.backup.pg_probackup:
    catalog: /data2/backup/pgbackup
    state: absent
'''

RETURN = r'''
backup:
  description:
    - The new backup (O(state=backup)), the validated one (O(state=validate)) or the newest (O(state=show)),
      from C(show); null when none.
  returned: success
  type: dict
  sample:
    id: TP5HK2
    mode: DELTA
    status: OK
    parent: TP5HJN
    wal: STREAM
    start_time: "2026-11-27 07:45:38+00"
    end_time: "2026-11-27 07:45:48+00"
    recovery_time: "2026-11-27 07:45:39+00"
    data_bytes: 111329374
    wal_bytes: 16777216
    uncompressed_bytes: 111221022
    pgdata_bytes: 338621355
    compress_alg: none
    server_version: "15"
    program_version: 2.5.15
backups:
  description: Every backup of the instance after the run, newest first, in the format of RV(backup).
  returned: success
  type: list
  elements: dict
mode_taken:
  description: The mode of the backup taken (or, in check mode, that would be taken). Kept for older callers; see RV(mode).
  returned: state=backup
  type: str
  sample: DELTA
engine:
  description: C(pg_probackup), as M(alation.backup.pg_basebackup) returns C(pg_basebackup) in the same shape.
  returned: state=backup
  type: str
  sample: pg_probackup
mode:
  description: The mode of the backup taken (or that would be), upper case (C(FULL), C(DELTA), C(PAGE), C(PTRACK)).
  returned: state=backup
  type: str
  sample: DELTA
backup_id:
  description: The id of the new backup; empty in check mode.
  returned: state=backup
  type: str
  sample: TP5HK2
fresh_removed:
  description: With O(fresh), whether an existing catalog was removed (in check mode, would be).
  returned: state=backup
  type: bool
made_catalog_dir:
  description: Whether the catalog directory was missing and made.
  returned: state=backup
  type: bool
databases:
  description:
    - With O(inventory), each database with its number of tables (C(tables)), counted right after the backup;
      empty when they could not be counted.
  returned: state=backup with O(inventory)
  type: dict
  sample: {alation: {tables: 412}, postgres: {tables: 0}}
databases_error:
  description: With O(inventory), why (some) databases could not be counted; empty when all were.
  returned: state=backup with O(inventory)
  type: str
reason:
  description:
    - Why that mode (and recovery) was chosen; for O(state=validate), which backup was validated.
    - For the bounded chain, why a FULL is due, or where the incremental stands in its chain.
  returned: state=backup or state=validate or state=show
  type: str
  sample: "DELTA on TP5HK2: 3 of 7 in this chain, whose FULL TP5HJN is 0.4 days old (full_every_days 7)"
pruned:
  description:
    - The ids of the older backups deleted from the catalog after the new FULL was validated, oldest first (in
      check mode, those that would be). Empty when none.
  returned: state=backup
  type: list
  elements: str
  sample: [TP5HJN, TP5HK2, TP5HKY]
prune_error:
  description: Why the older chain was not (all) deleted; empty when it was, or when there was none to delete.
  returned: state=backup
  type: str
next_pruned:
  description: The ids the next O(state=backup) run would delete after its FULL (empty when it takes an incremental).
  returned: state=show
  type: list
  elements: str
recovered:
  description:
    - The recovery of a broken chain that ran (or would run in check mode); empty when none.
    - C(action) is reset or repair; C(broken) lists the bad entries (C(id), C(status), C(reason));
      C(deleted) the ids of every backup removed.
    - C(action) is re-add when an add-instance that was stopped left the instance's dirs without its
      C(pg_probackup.conf). Those dirs were empty, are listed in C(removed) (host paths), and the instance is
      added again. Such dirs that hold anything fail the run, nothing deleted.
  returned: state=backup
  type: dict
  sample: {action: repair, broken: [{id: TP5HLM, status: RUNNING, reason: "backup TP5HLM is RUNNING but its process 10063 is gone"}], deleted: [TP5HLM]}
discarded:
  description: On failure, the entry the failed backup left, and whether it was deleted.
  returned: failure of the backup or its validation
  type: dict
  sample: {id: TP5HL0, status: ERROR, deleted: true}
next_mode:
  description: The mode the next O(state=backup) run would take with the same options (null if it would fail).
  returned: state=show
  type: str
catalog:
  description: The whole catalog as parsed from C(show --format=json) (a list of C(instance), C(backups)).
  returned: state=show
  type: list
  elements: dict
catalog_state:
  description: absent, empty, catalog or foreign (a non-empty directory that is no catalog).
  returned: state=show
  type: str
instance_exists:
  description: Whether the instance is in the catalog.
  returned: state=show
  type: bool
broken:
  description: Whether the newest backup is broken.
  returned: state=show
  type: bool
bad:
  description: The ERROR, CORRUPT, ORPHAN and dead RUNNING entries.
  returned: state=show
  type: list
  elements: dict
in_flight:
  description: RUNNING entries whose process is alive (C(id), C(pid)).
  returned: state=show or state=validate in check mode
  type: list
  elements: dict
tool_warnings:
  description: The WARNING lines pg_probackup printed, without repeats. Not failures.
  returned: always
  type: list
  elements: str
executed_commands:
  description: The command lines run, in order (the password is in the environment, never here).
  returned: always
  type: list
  elements: str
duration_s:
  description: Wall time of the module run in seconds.
  returned: always
  type: float
stderr:
  description: Full stderr of the pg_probackup command that failed.
  returned: failure
  type: str
rc:
  description: Exit code of the pg_probackup command that failed.
  returned: failure
  type: int
'''

import os
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.alation.backup.plugins.module_utils import _locks, _watch
from ansible_collections.alation.backup.plugins.module_utils._locks import FileLock, LockBusy
from ansible_collections.alation.backup.plugins.module_utils._pg_probackup import (
    BACKUP_MODES, INCREMENTAL_MODES, ON_BROKEN_CHAIN, Catalog, PgProbackupError, lock_path, locate, run_absent,
    run_backup, run_show, run_validate)
from ansible_collections.alation.backup.plugins.module_utils._pg_inventory import count_tables
from ansible_collections.alation.backup.plugins.module_utils._postgres import (
    connection_argv, connection_env, password_file_argument_spec, postgres_argument_spec, take_password_file)
from ansible_collections.alation.backup.plugins.module_utils._runner import Runner, runner_argument_spec
from ansible_collections.alation.backup.plugins.module_utils._staging import refusal
from ansible_collections.alation.backup.plugins.module_utils._users import Accounts


def argument_spec():
    spec = dict(
        catalog=dict(type='path', required=True),
        instance=dict(type='str', default='alation'),
        pgdata=dict(type='path'),
        state=dict(type='str', default='backup', choices=['backup', 'show', 'validate', 'absent']),
        backup_mode=dict(type='str', default='auto', choices=list(BACKUP_MODES)),
        incremental_mode=dict(type='str', default='delta', choices=list(INCREMENTAL_MODES)),
        on_broken_chain=dict(type='str', default='reset', choices=list(ON_BROKEN_CHAIN)),
        stream=dict(type='bool', default=True),
        threads=dict(type='int'),
        compress_algorithm=dict(type='str', default='none', choices=['none', 'zlib', 'pglz']),
        compression_level=dict(type='int', aliases=['compress_level']),
        validate=dict(type='bool', default=True),
        lock_timeout=dict(type='int', default=0),
        binary=dict(type='str'),
        bindir=dict(type='path'),
        full_every=dict(type='int', default=7),
        full_every_days=dict(type='float', default=7),
        fresh=dict(type='bool', default=False),
        inventory=dict(type='bool', default=False),
        allowed_roots=dict(type='list', elements='path', default=[]),
    )
    spec.update(runner_argument_spec())
    spec.update(postgres_argument_spec())
    spec.update(password_file_argument_spec())
    spec.update(_locks.lease_argument_spec())
    spec.update(_watch.watch_argument_spec())
    return spec


def check_params(module, p):
    catalog = p['catalog']
    if not os.path.isabs(catalog) or os.path.normpath(catalog) == '/':
        module.fail_json(msg='catalog=%s must be an absolute path below / (the pg staging dir, e.g. '
                             '/data2/backup/pgbackup)' % catalog)
    p['catalog'] = os.path.normpath(catalog)
    if p['compression_level'] is not None:
        if not 0 <= p['compression_level'] <= 9:
            module.fail_json(msg='compression_level=%s must be 0-9' % p['compression_level'])
        if p['compress_algorithm'] == 'none':
            module.fail_json(msg='compression_level=%s needs compress_algorithm zlib or pglz (it is none)'
                                 % p['compression_level'])
    if p['threads'] is None:
        p['threads'] = os.cpu_count() or 1
    elif p['threads'] < 1:
        module.fail_json(msg='threads=%s must be 1 or more' % p['threads'])
    if p['lock_timeout'] < 0:
        module.fail_json(msg='lock_timeout=%s must be 0 (fail at once) or more seconds' % p['lock_timeout'])
    if p['full_every'] < 0:
        module.fail_json(msg='full_every=%s must be 0 (never force a FULL by count) or more backups'
                             % p['full_every'])
    if p['full_every_days'] < 0:
        module.fail_json(msg='full_every_days=%s must be 0 (never force a FULL by age) or more days'
                             % p['full_every_days'])
    if p['pgdata'] and not os.path.isabs(p['pgdata']):
        module.fail_json(msg='pgdata=%s must be an absolute path' % p['pgdata'])


def locate_binary(module, runner, binary):
    """The pg_probackup path as seen inside the chroot, or fail saying where we looked."""
    try:
        return locate(runner, binary)
    except PgProbackupError as e:
        module.fail_json(msg=e.msg)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    take_password_file(module)
    started = time.monotonic()
    p = dict(module.params)
    check_params(module, p)
    runner = Runner(module, p['chroot'], p['run_as'])
    state = p['state']
    binary = None if state == 'absent' else locate_binary(module, runner, p['binary'])
    cat = Catalog(runner, binary, p['catalog'], p['instance'], threads=p['threads'],
                  conn_argv=connection_argv(p), conn_env=connection_env(p))

    cat.allowed_roots = p['allowed_roots']
    if state == 'backup' and p['run_as']:
        try:
            cat.owner = Accounts(p['chroot']).user(p['run_as'], 'run_as')
        except ValueError as e:
            module.fail_json(msg=str(e), changed=False)

    lease = _locks.leased(module, beat=_watch.guard(module, 'database'))
    cat.lease_check = lease.check

    def finish(result, failed_msg=None):
        if result.get('prune_error'):
            module.warn(result['prune_error'])
        result.update(executed_commands=runner.executed_commands, tool_warnings=cat.warnings,
                      duration_s=round(time.monotonic() - started, 3))
        if failed_msg:
            lease.fail_json(failed_msg, **result)
        lease.exit_json(**result)

    lock = None
    # show only reads; check mode writes nothing (not even the lock file).
    if state != 'show' and not module.check_mode:
        parent = os.path.dirname(cat.host_catalog)
        if state == 'backup' and not os.path.lexists(parent):
            # The catalog dir is made with its parents (as mkdir -p), under the staging rules.
            why = refusal(cat.host_catalog, cat.allowed_roots, p['chroot'])
            if why:
                finish(dict(changed=False), 'not making catalog %s: %s' % (p['catalog'], why))
            try:
                os.makedirs(parent)
            except OSError as e:
                finish(dict(changed=False), 'could not make the parent %s of catalog %s: %s'
                       % (parent, p['catalog'], e.strerror or e))
        if not os.path.isdir(parent):
            finish(dict(changed=False), 'the parent directory of catalog %s does not exist (%s on the host): '
                                        'create it, writable by run_as, first' % (p['catalog'], parent))
        lock = FileLock(lock_path(cat.host_catalog), timeout=p['lock_timeout'],
                        purpose='alation.backup.pg_probackup state=%s catalog=%s' % (state, p['catalog']))
        try:
            lock.acquire()
        except LockBusy as e:
            finish(dict(changed=False, lock_holder_pid=e.holder_pid),
                   'another backup of this catalog is running (pid %s): lock %s held%s; waited %ss '
                   '(lock_timeout=%s). Run again when it is done, or raise lock_timeout.'
                   % (e.holder_pid or 'unknown', e.path, ' for: %s' % e.holder_purpose if e.holder_purpose else '',
                      e.waited, p['lock_timeout']))
        except OSError as e:
            finish(dict(changed=False), 'cannot open lock file %s beside catalog %s: %s'
                   % (lock_path(cat.host_catalog), p['catalog'], e))
    try:
        if state == 'backup':
            result = run_backup(cat, p, module.check_mode)
        elif state == 'show':
            result = run_show(cat, p)
        elif state == 'validate':
            result = run_validate(cat, module.check_mode)
        else:
            result = run_absent(cat, module.check_mode)
    except PgProbackupError as e:
        result = dict(changed=False)
        result.update(e.extra)
        if e.result:
            result.update(rc=e.result.get('rc'), stderr=e.result.get('stderr'), cmd=e.result.get('cmd'))
        finish(result, e.msg)
    except OSError as e:
        finish(dict(changed=False), 'pg_probackup state=%s on catalog %s: %s' % (state, p['catalog'], e))
    finally:
        if lock is not None:
            lock.release()
    if state == 'backup' and p['inventory']:
        # Right after the backup, so the counts are as close as can be to what the backup holds.
        result['databases'], result['databases_error'] = count_tables(
            runner, connection_argv(dict(p, dbname=None)), connection_env(p), p['dbname'] or 'postgres', p['bindir'])
        if result['databases_error']:
            module.warn('the tables were not all counted for the restore drill: %s' % result['databases_error'])
    finish(result)


if __name__ == '__main__':
    main()
