#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
module: alation_info
short_description: Read the facts a backup needs from an Alation host
version_added: 0.2.0
author: alation.backup maintainers (@alation-backup)
description:
  - Reads, and never changes, what the backup of an Alation host depends on.
  - The backup keys of Alation's configuration, read with C(alation_conf <key>) inside the Alation shell (a chroot) as O(run_as),
    the way Alation's own admin scripts do (C(chroot <root> /bin/su - <run_as> -c "alation_conf <key>")).
  - The Alation version, from C(/opt/alation/django/main/alation_version.py) inside the shell, as the archive names it (RV(version_tag)).
  - The paths of a run (RV(paths)) - the staging dir, the pg staging dir, the backup storage dir, PGDATA, the backup
    lock, the version file and any O(paths) - each inside the shell, on the host, and as handed to programs, so that
    roles never compute them.
  - A key that cannot be read is reported in RV(conf_errors) and as a warning, not as a failure, unless O(required) lists it.
extends_documentation_fragment:
  - alation.backup.attributes
  - alation.backup.attributes.read_only
options:
  root:
    description:
      - The host path of the Alation shell (its chroot).
      - Set V(/) on a plain host where Alation's paths are host paths.
    type: path
    default: /opt/alation/alation
  use_chroot:
    description:
      - Whether the programs of the run work inside the Alation shell. Sets RV(paths)' C(path) (the shell path when
        true and O(root) is not V(/), else the host path) and RV(chroot).
      - V(false) for a plain directory tree standing in for the shell (module tests).
    type: bool
    default: true
  read_conf:
    description:
      - Read alation_conf at all. V(false) for callers that need only the version and the paths (the restore role);
        the staging dir is then O(staging_dir), or C(/data2/tmp).
    type: bool
    default: true
  staging_dir:
    description:
      - The staging dir, inside the shell. Omit to take C(alation.backup.data_temp_dir), or C(/data2/tmp) when that is
        not set.
    type: str
  pg_staging_dir:
    description: The pg staging dir, inside the shell.
    type: str
    default: /data2/backup/pgbackup
  storage_dir:
    description:
      - The backup storage dir, inside the shell. The backup lock (C(.alation_backup.lock)) is in it.
      - Returned as RV(paths.backup_storage_dir).
    type: str
    default: /data2/backup
    aliases: [backup_storage_dir]
  pgdata:
    description: The PostgreSQL data directory, inside the shell.
    type: str
    default: /data1/pgsql/data
  paths:
    description: More paths inside the shell (name to path), returned in RV(paths) like the others.
    type: dict
    default: {}
  extra_paths:
    description: Site files inside the shell that travel in the archive; returned in RV(extra_paths).
    type: list
    elements: str
    default: []
  check_paths:
    description:
      - Refuse (fail) when the staging dir, the pg staging dir and the backup storage dir could harm each other or the
        shell, before anything is touched. They must be distinct, none C(/) or a top-level dir of the shell
        (C(/data1), C(/data2)) nor reached through a symlink; the staging dir neither contains nor lies inside the
        backup storage dir, the pg staging dir, PGDATA or a system dir of the shell; the pg staging dir may sit inside
        the backup storage dir but contains neither it nor PGDATA.
      - Also refuse, looking at the host, an extra path that is missing, is or holds a FIFO, socket, device or dangling
        symlink, overlaps a dir of the run, or does not fit the staging dir; a O(pgdata) that is not a PostgreSQL data
        directory (no C(PG_VERSION)); a staging dir, pg staging dir or backup storage dir that cannot be written (a
        read-only file system, C(chattr +i) or C(+a)).
      - Also refuse when the staging dir is to come from C(alation.backup.data_temp_dir) and O(alation_conf_command)
        cannot be run at all (not found, not executable), rather than quietly take C(/data2/tmp).
      - The message names the two paths and the rule, or the value and what to do.
    type: bool
    default: false
  users:
    description:
      - Users the run works as or gives files to (names or numeric uids). Each must exist in the Alation shell's own
        C(etc/passwd) (on the host with O(use_chroot=false) or O(root=/)); a user the host also has under another
        uid is refused, naming both uids, because files must carry the shell's ids.
      - Returned in RV(users) with their uid, primary gid and name.
    type: list
    elements: str
    default: []
  groups:
    description:
      - Groups the run gives files to (names or numeric gids). Each named one must exist in the Alation shell's own
        C(etc/group) (on the host with O(use_chroot=false) or O(root=/)).
    type: list
    elements: str
    default: []
  alation_conf_keys:
    description:
      - The alation_conf keys to read.
      - C(alation.backup.data_temp_dir) is read as well unless O(staging_dir) is given, since it locates the staging dir.
    type: list
    elements: str
    default:
      - alation.backup.data_temp_dir
      - alation.backup.scheduled_minute
      - alation.backup.scheduled_hour
      - alation.backup.scheduled_day
  required:
    description:
      - Keys that must be set (to a non-empty value). The module fails when one of them is not; other keys only warn.
      - Keys listed here are read even if O(alation_conf_keys) does not list them.
    type: list
    elements: str
    default: []
  run_as:
    description:
      - OS user to run C(alation_conf) as, through C(su -) so that user's login PATH applies.
      - When it is the user the module runs as, C(alation_conf) is run directly, without C(su).
    type: str
    default: alationadmin
  alation_conf_command:
    description:
      - The C(alation_conf) program.
      - A bare name is looked up on O(run_as)'s login PATH inside the Alation shell (on the module's PATH when O(run_as) is the current user).
      - An absolute path is a B(host) path and runs outside the chroot, still as O(run_as). This is for hosts, and tests,
        where the command sits elsewhere; to pick a program inside the shell, give a name on its login PATH.
    type: str
    default: alation_conf
  alation_conf_timeout:
    description:
      - Seconds each C(alation_conf) call may take. One that has not answered by then is stopped (TERM, then KILL 5 s
        later) and the module fails, naming the command; V(0) waits for ever.
    type: int
    default: 60
  alation_schedule_margin:
    description:
      - Refuse (fail) when Alation's own backup is scheduled to start within this many minutes before or after now
        (UTC), since it uses the same staging dirs. The schedule is read from the alation_conf keys
        C(alation.backup.scheduled_minute), C(alation.backup.scheduled_hour) and C(alation.backup.scheduled_day),
        read like cron's fields (V(*) or empty for every, numbers, ranges C(a-b), steps C(/n), lists; days also
        as C(sun) .. C(sat)). A key alation_conf does not have counts as V(*).
      - Refuses too when alation_conf cannot be run or a value cannot be read. The message names the schedule, its
        start and the role variable C(alation_backup_alation_schedule_margin).
      - V(0) turns the check off and the keys are not read. Needs O(read_conf).
    type: int
    default: 0
  refuse_busy:
    description:
      - Refuse (fail) while another process is at work in the staging dirs, as Alation's own backup is while it
        runs - a C(pg_probackup) whose catalog (C(-B), C(--backup-path) or C(BACKUP_PATH), seen from that
        process's root, inside the Alation shell or not) is the pg staging dir, or any process whose cwd, root or
        an open file lies in the staging dir or the pg staging dir. This module's own process and its parents are
        not counted.
      - The message names each process with its pid. Processes of other users are only seen when the module runs
        as root.
    type: bool
    default: false
notes:
  - The version file is parsed as text, never imported or run.
'''

EXAMPLES = r'''
- name: Read the facts of the Alation host
  alation.backup.alation_info:
  register: alation

- name: Show where the backup will stage
  ansible.builtin.debug:
    msg: "{{ alation.paths.staging_dir.host_path }} for Alation {{ alation.version }}"

- name: Fail early if the staging dir is not configured
  alation.backup.alation_info:
    required:
      - alation.backup.data_temp_dir

- name: A plain host (no Alation shell), alation_conf installed elsewhere
  alation.backup.alation_info:
    root: /
    run_as: alationadmin
    alation_conf_command: /usr/local/alation/bin/alation_conf
'''

RETURN = r'''
root:
  description: The host path of the Alation shell, normalized.
  returned: always
  type: str
  sample: /opt/alation/alation
version:
  description: The Alation version, major.minor.patch.build.
  returned: success
  type: str
  sample: 5.17.0.116556
version_tag:
  description: The version as it appears in archive names, major-minor-patch-build.
  returned: success
  type: str
  sample: 5-17-0-116556
conf:
  description: Each key read, mapped to its value (possibly empty), or null when it could not be read.
  returned: always
  type: dict
  sample:
    alation.backup.data_temp_dir: /data2/tmp
    alation.backup.scheduled_hour: "1"
    alation.backup.scheduled_minute: null
conf_errors:
  description: Each key that could not be read, mapped to why (not set, command missing, command failed).
  returned: always
  type: dict
  sample:
    alation.backup.scheduled_minute: 'not set: alation_conf printed no "alation.backup.scheduled_minute = <value>" line'
paths:
  description:
    - The paths of a run, each as C(shell_path) (inside the Alation shell), C(host_path) (under O(root)) and C(path)
      (as handed to programs, which is the shell path when they run inside the shell, see O(use_chroot)).
    - C(staging_dir) is O(staging_dir), else the value of C(alation.backup.data_temp_dir), else C(/data2/tmp).
    - Also C(pgdata), C(lock) (the backup lock in the backup storage dir) and each of O(paths).
  returned: success
  type: dict
  contains:
    staging_dir:
      description: Emptied before and after each backup.
      type: dict
      sample: {shell_path: /data2/tmp, host_path: /opt/alation/alation/data2/tmp, path: /data2/tmp}
    pg_staging_dir:
      description: Where pg_probackup stages the Postgres backup.
      type: dict
      sample: {shell_path: /data2/backup/pgbackup, host_path: /opt/alation/alation/data2/backup/pgbackup}
    backup_storage_dir:
      description: Where the archives are kept.
      type: dict
      sample: {shell_path: /data2/backup, host_path: /opt/alation/alation/data2/backup}
    version_file:
      description: The file the version was read from.
      type: dict
      sample: {shell_path: /opt/alation/django/main/alation_version.py, host_path: /opt/alation/alation/opt/alation/django/main/alation_version.py}
extra_paths:
  description: O(extra_paths), each as C(shell_path), C(host_path) and C(path).
  returned: success
  type: list
  elements: dict
users:
  description: Each of O(users) with its C(uid), primary C(gid) and C(name), as the Alation shell knows them.
  returned: success
  type: dict
  sample: {alation: {uid: 1500, gid: 1500, name: alation}, "1502": {uid: 1502, gid: 1502, name: alationadmin}}
chroot:
  description: The Alation shell programs run in (O(root)), or an empty string when they run on the host.
  returned: success
  type: str
  sample: /opt/alation/alation
disk_caches:
  description: Contents of C(<root>/.disk1_cache) and C(<root>/.disk2_cache) (the host disks behind /data1 and /data2) that exist.
  returned: always
  type: dict
  sample: {disk1: /dev/sdb1, disk2: /dev/sdc1}
alation_schedule:
  description:
    - Alation's own backup schedule as read (C(minute), C(hour), C(day); null for a key not set), its C(next_start)
      and the C(nearest_start) within C(margin_minutes) of C(now) (UTC, C(YYYY-MM-DDTHH:MMZ); null when none).
    - Empty when O(alation_schedule_margin) is V(0).
  returned: always
  type: dict
  sample: {minute: "2", hour: "1", day: "tue,sat", margin_minutes: 90, now: 2026-12-03T13:40Z,
           next_start: 2026-12-05T01:02Z, nearest_start: null}
busy_processes:
  description: With O(refuse_busy), the processes found at work in the staging dirs (C(pid), C(name), C(cmdline), C(uid), C(why)).
  returned: always
  type: list
  elements: dict
  sample: [{pid: 4242, name: pg_probackup, cmdline: pg_probackup backup -B /data2/backup/pgbackup -b FULL, uid: 1500,
            why: runs pg_probackup on the pg staging dir (catalog /data2/backup/pgbackup)}]
executed_commands:
  description: The command lines run to read the keys.
  returned: always
  type: list
  elements: str
'''

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.alation.backup.plugins.module_utils import _alation, _alation_schedule, _inputs, _locks, _proc_scan
from ansible_collections.alation.backup.plugins.module_utils._runner import Runner
from ansible_collections.alation.backup.plugins.module_utils._users import Accounts, UnknownAccount


def main():
    module = AnsibleModule(argument_spec=_alation.alation_info_argument_spec(), supports_check_mode=True)
    p = module.params
    root = os.path.normpath(p['root'])
    command = p['alation_conf_command']
    result = dict(changed=False, root=root, conf={}, conf_errors={}, disk_caches={}, executed_commands=[],
                  alation_schedule={}, busy_processes=[])

    if not os.path.isabs(root) or not os.path.isdir(root):
        module.fail_json(msg='root %s is not a directory: give the host path of the Alation shell '
                             '(default %s), or / on a plain host' % (root, _alation.DEFAULT_ROOT), **result)
    if not command:
        module.fail_json(msg='alation_conf_command is empty: give a program name or an absolute host path', **result)

    # The staging dir's key only when the staging dir is not given.
    keys = [] if p['staging_dir'] else [_alation.DATA_TEMP_DIR_KEY]
    keys += [k for k in p['alation_conf_keys'] + p['required'] if k not in keys]
    margin = p['alation_schedule_margin']
    if margin < 0:
        module.fail_json(msg='alation_schedule_margin is %d: give the minutes to keep clear of Alation\'s own backup '
                             'schedule, or 0 for off' % margin, **result)
    if margin and not p['read_conf']:
        module.fail_json(msg='alation_schedule_margin needs read_conf: the schedule is read with alation_conf', **result)
    # The schedule keys only when the check is on.
    keys += [k for k in _alation_schedule.SCHEDULE_KEYS if margin and k not in keys]
    if not p['read_conf']:
        keys = []

    if p['alation_conf_timeout'] < 0:
        module.fail_json(msg='alation_conf_timeout is %d: give the seconds alation_conf may take, or 0 for no limit'
                             % p['alation_conf_timeout'], **result)
    chroot = root if _alation.conf_runs_in_chroot(command) else None
    runner = Runner(module, chroot=chroot, run_as=p['run_as'])
    try:
        conf, errors = _alation.read_conf(runner, command, keys, p['alation_conf_timeout']) if keys else ({}, {})
    except _alation.AlationFactError as e:
        result.update(executed_commands=runner.executed_commands)
        module.fail_json(msg='refusing the run, nothing was touched: %s' % e, **result)
    result.update(conf=conf, conf_errors=errors, executed_commands=runner.executed_commands)
    for key in keys:
        if key in errors:
            module.warn('alation_conf key %s: %s' % (key, errors[key]))
    unset = [k for k in p['required'] if not conf.get(k)]
    if unset:
        module.fail_json(msg='required alation_conf keys not set: %s. Set them with alation_conf <key> -s <value> '
                             'in the Alation shell, or drop them from required.' % ', '.join(unset), **result)

    data_temp_dir = conf.get(_alation.DATA_TEMP_DIR_KEY)
    unusable = errors.get(_alation.DATA_TEMP_DIR_KEY, '')
    if p['check_paths'] and not p['staging_dir'] and unusable.startswith(_alation.CONF_UNUSABLE):
        # A typo in the command must not quietly stage in /data2/tmp when the admin moved the staging dir.
        module.fail_json(msg='refusing the run, nothing was touched: the staging dir comes from alation_conf key %s, '
                             'and %s. Fix alation_conf_command (role variable alation_backup_alation_conf_command), '
                             'or give the staging dir itself (alation_backup_staging_dir).'
                             % (_alation.DATA_TEMP_DIR_KEY, unusable), **result)
    try:
        paths = _alation.shell_paths(
            root, data_temp_dir, use_chroot=p['use_chroot'], staging_dir=p['staging_dir'],
            pg_staging_dir=p['pg_staging_dir'], backup_storage_dir=p['storage_dir'], pgdata=p['pgdata'],
            named=p['paths'] or {})
        inside = _alation.in_shell(root, p['use_chroot'])
        extra = [_alation.path_entry(root, e, inside, 'extra') for e in p['extra_paths'] or []]
    except ValueError as e:
        if str(e).startswith('staging_dir:') and not p['staging_dir'] and data_temp_dir:
            module.fail_json(msg='%s is %r: %s. Set it with alation_conf %s -s <absolute path>'
                                 % (_alation.DATA_TEMP_DIR_KEY, data_temp_dir, str(e).split(': ', 1)[1],
                                    _alation.DATA_TEMP_DIR_KEY), **result)
        module.fail_json(msg='%s. Give paths inside the Alation shell, absolute and without "..".' % e, **result)
    chroot = root if _alation.in_shell(root, p['use_chroot']) else ''
    result.update(paths=paths, extra_paths=extra, chroot=chroot)
    if p['check_paths']:
        problems = _alation.path_problems(root, paths)
        # What the host says about them, once the names are safe to look at.
        problems = problems or _inputs.host_problems(paths, extra)
        if problems:
            module.fail_json(msg='refusing the run, nothing was touched: %s' % '; '.join(problems), **result)

    accounts = Accounts(chroot)
    problems = accounts.conflicts(p['users'] or [])
    for name in p['groups'] or []:
        try:
            accounts.gid(name)
        except UnknownAccount as e:
            problems.append(str(e))
    if problems:
        module.fail_json(msg='; '.join(problems), **result)
    result['users'] = {}
    for name in p['users'] or []:
        if name not in (None, ''):
            uid, gid = accounts.user(name)
            result['users'][name] = dict(uid=uid, gid=gid, name=accounts.user_name(uid) or str(name))
    result['disk_caches'] = _alation.read_disk_caches(root)

    try:
        parts = _alation.read_version_file(paths['version_file']['host_path'])
    except _alation.AlationFactError as e:
        module.fail_json(msg=str(e), **result)
    result['version'], result['version_tag'] = _alation.version_strings(parts)

    # Alation's own backup: running now, or about to start (or just started).
    if p['refuse_busy']:
        busy = _proc_scan.scan([paths['staging_dir']['host_path'], paths['pg_staging_dir']['host_path']],
                               [paths['pg_staging_dir']['host_path']], exclude=_proc_scan.ancestors(os.getpid()))
        result['busy_processes'] = busy
        holder = _locks.read_holder(paths['lock']['host_path']) if busy else None
        if holder and _locks.stale_reason(holder, 600) is None:
            # Another run of this collection at work: say so, as the host lock would.
            module.fail_json(msg='refusing the run, nothing was touched: another run holds the host lock %s: %s; its '
                                 'processes are at work in the staging dirs: %s'
                                 % (paths['lock']['host_path'], _locks.describe(holder),
                                    '; '.join(_proc_scan.describe(b) for b in busy)), **result)
        if busy:
            module.fail_json(
                msg='refusing the run, nothing was touched: another backup (Alation\'s own, or another program) is at '
                    'work in the staging dirs: %s. Wait for it to end (Alation\'s own backup may take up to '
                    'alation.backup.chef_timeout, 6 h by default), or stop it; if it is Alation\'s scheduled backup, '
                    'turn that schedule off now that this collection backs up (see the README, "Alation\'s own '
                    'backup")' % '; '.join(_proc_scan.describe(b) for b in busy), **result)
    if margin:
        unusable = [errors[k] for k in _alation_schedule.SCHEDULE_KEYS if errors.get(k, '').startswith(_alation.CONF_UNUSABLE)]
        if unusable:
            module.fail_json(msg='refusing the run, nothing was touched: Alation\'s own backup schedule cannot be read: '
                                 '%s. Fix alation_conf_command (alation_backup_alation_conf_command), or set %s to 0 '
                                 'to skip this check' % (unusable[0], _alation_schedule.MARGIN_VARIABLE), **result)
        try:
            found, problem = _alation_schedule.check(conf, margin, _alation_schedule.utcnow())
        except _alation_schedule.ScheduleError as e:
            module.fail_json(msg='refusing the run, nothing was touched: %s' % e, **result)
        result['alation_schedule'] = found
        if problem:
            module.fail_json(msg='refusing the run, nothing was touched: %s' % problem, **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
