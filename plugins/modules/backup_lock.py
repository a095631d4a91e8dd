#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
module: backup_lock
short_description: Take or release the per-host lock of an Alation backup run
version_added: 0.2.0
author: alation.backup maintainers (@alation-backup)
description:
  - A backup run is many tasks; this lock spans them, so that a second run on the same host is refused at once and told who holds it.
  - The lock is a lease file created with C(O_EXCL). It records who took it, when, the run id, the machine (its
    C(/etc/machine-id) and host name), the host's boot id, when it was last renewed (by the wall clock and by
    C(CLOCK_BOOTTIME), a clock nobody sets) and O(stale_after).
  - The run renews the lease while it works, at each step (taking it again with the same O(run_id)) and from a heartbeat
    in the long-running modules (their C(lease) option), every min(30, O(stale_after)/4) seconds. Those modules also
    check the lease just before each destructive act (emptying, deleting, publishing, renaming on the backup host) and
    stop there, changing nothing more, once it is no longer theirs.
  - A run that was killed or cancelled (an AWX job cancelled, a controller rebooted, an SSH link dropped) stops renewing.
    Once its lease has not been renewed for O(stale_after) seconds, or this machine has rebooted, the next run takes it
    over with a warning naming the dead run. A live run is never taken over.
  - On the same machine and boot the silence is measured by C(CLOCK_BOOTTIME), so a wall clock set back a day or ahead
    neither keeps a killed run's lease for longer nor frees a live run's lease sooner than O(stale_after).
  - A lease of another machine (a storage dir shared over NFS) can only be judged by the wall clock. It is never taken
    over while renewed within O(stale_after); and with O(storage_dir) given the run is refused anyway (see below).
  - B(Owner marker.) With O(storage_dir) (and O(pg_staging_dir)) the module refuses, before taking the lease and changing
    nothing, a dir that another machine uses - its owner marker C(.alation_backup_owner) (JSON with C(machine_id) and
    C(hostname)) names another machine, or the lock file is another machine's lease, live or not. The message says to
    give each host its own storage dir. Once the lease is taken, it writes the marker where it is missing - inside the
    storage dir, and for a pg staging dir outside it beside that dir (C(.<name>.alation_backup_owner) in its parent, as
    pg_probackup needs an empty catalog dir and the pg_basebackup staging is emptied each run).
  - What the marker cannot detect, archives or a pg_probackup catalog that another machine wrote before any marker
    existed (an older version of this collection, another tool), and a pg staging dir that is itself the mount point of
    a shared filesystem (its marker is in the parent). Two hosts sharing a dir are caught from the first run that writes
    a marker on.
  - A machine is its machine id and its host name together (machines cloned from one image may share a machine id). A
    host that was renamed is refused by its own old marker; remove the marker then.
extends_documentation_fragment:
  - alation.backup.attributes
  - alation.backup.shell
options:
  path:
    description: The lock file. Keep it outside the staging dirs so their cleanup cannot remove it.
    type: path
    required: true
  state:
    description:
      - V(present) takes the lock, V(absent) releases it.
      - V(inspect) only refuses dirs that another machine uses (the owner markers of O(storage_dir) and O(pg_staging_dir),
        and the lock file at O(path)); it takes and writes nothing. Run it before anything reads the storage dir.
    type: str
    choices: [present, absent, inspect]
    default: present
  storage_dir:
    description:
      - The backup storage dir this run writes its archives to. It must be this machine's alone; see the owner marker
        above. Without it no marker is checked or written.
    type: path
  pg_staging_dir:
    description:
      - The pg staging dir (the pg_probackup catalog or the pg_basebackup staging dir). Inside O(storage_dir) it is
        covered by that dir's marker; elsewhere its own marker sits beside it.
    type: path
  run_id:
    description:
      - Identifies this run. Taking the lock again with the same id renews and returns the same lease (a retried task
        does not lock itself out).
      - Required with O(state=present).
    type: str
  owner:
    description: Who takes the lock, shown to a refused run (for example C(admin@controller, AWX job 42)).
    type: str
    default: unknown
  stale_after:
    description:
      - Seconds without renewal after which the lease counts as left by a dead run and may be taken over.
      - Keep it well above the heartbeat (at most 30 seconds) so that a busy host never loses a live run's lease.
    type: int
    default: 600
  token:
    description:
      - The token returned when the lock was taken. Required with O(state=absent); a lease with another token is left alone.
    type: str
  min_interval:
    description:
      - Hours. With O(state=present) and O(storage_dir), after the owner check, a run whose newest archive in
        O(storage_dir) is younger than this takes no lock and returns RV(skip_reason) instead (and RV(lease) empty).
      - The newest archive is the newest that its C(.sha256) vouches for, as
        O(alation.backup.archive_info#module:newest_good) finds it (a lone C(.sha256), a temporary file, a damaged
        archive or one named in the future never counts); its age is by its mtime.
      - V(0) is off.
    type: float
    default: 0
  storage_dir_mode:
    description:
      - With O(state=present) and O(storage_dir), a missing O(storage_dir) is made (its missing parents as C(mkdir -p)
        makes them) with this mode, an octal string. An existing one is never changed.
    type: str
    default: '0755'
  storage_dir_owner:
    description:
      - User (name or uid) who owns a O(storage_dir) this module makes, an account of the Alation shell with O(chroot).
        Omit for the module user. The module runs no program; O(chroot) only names the shell of the accounts.
    type: str
  storage_dir_group:
    description: Group (name or gid) of a O(storage_dir) this module makes. Omit for O(storage_dir_owner)'s primary group.
    type: str
  drill_every_days:
    description:
      - Days. With O(state=present), whether this run should drill its archive (the backup role's
        C(alation_backup_drill_every_days)) - when no good drill is recorded on this host, or the last good one is older
        than this (or dated ahead of this host's clock). Returned as RV(drill_due) and RV(drill_reason), with
        RV(last_drill).
      - The drill state is the file C(.alation_backup.drill.json) beside the lock file.
      - V(0) is off.
    type: float
    default: 0
  drill:
    description:
      - With O(state=present), the verdict of the drill this run just did, kept in the drill state beside the lock file
        (a run that holds the lock renews it with the same O(run_id)). C(result) V(ok) makes it the last good drill.
    type: dict
    suboptions:
      result:
        description: How the drill ended.
        type: str
        required: true
        choices: [ok, failed, skipped]
      reason:
        description: Why it failed or was skipped.
        type: str
        default: ''
      archive:
        description: The archive drilled.
        type: str
        default: ''
      duration_s:
        description: Seconds the drill took.
        type: float
        default: 0
attributes:
  check_mode:
    support: full
    details: In check mode the lock is only inspected.
  diff_mode:
    support: none
  platform:
    platforms: posix'''

EXAMPLES = r'''
- name: Take the host lock
  alation.backup.backup_lock:
    path: /data2/backup/.alation_backup.lock
    run_id: "{{ ansible_date_time.iso8601_micro }}"
    owner: "{{ lookup('env', 'USER') }}@controller"
  register: lock

- name: Refuse a storage dir another machine uses, before reading anything in it
  alation.backup.backup_lock:
    path: /data2/backup/.alation_backup.lock
    state: inspect
    storage_dir: /data2/backup
    pg_staging_dir: /data2/backup/pgbackup

- name: Release it
  alation.backup.backup_lock:
    path: /data2/backup/.alation_backup.lock
    state: absent
    token: "{{ lock.token }}"
'''

RETURN = r'''
token:
  description: Pass it back to release the lock.
  returned: state=present, not in check mode, the lock taken
  type: str
lease:
  description:
    - What the modules that work under the lock take as their C(lease) option (C(path) and C(token)) once the lock was
      taken; empty when it was not (check mode, or RV(skip_reason)).
  returned: state=present
  type: dict
  sample: {path: /opt/alation/alation/data2/backup/.alation_backup.lock, token: 6f1c0d7e4b8a4f0e9d2c}
skip_reason:
  description:
    - Why the lock was not taken and the run should skip (O(min_interval)), as the backup role says it, for example
      C(202405011230_5-17-0-116556_alation_backup.tar.gz is younger than alation_backup_min_interval (24 h)); empty
      otherwise.
  returned: state=present
  type: str
fresh:
  description:
    - With O(min_interval), the newest archive its C(.sha256) vouches for, as
      M(alation.backup.archive_info) O(alation.backup.archive_info#module:newest_good) returns it; empty without.
  returned: state=present
  type: dict
  contains:
    path:
      description: The archive, or null when none counts.
      type: str
    age_s:
      description: Seconds since it was written (null when none counts).
      type: float
    ignored:
      description: What was passed over and why (C(path), C(why)).
      type: list
      elements: dict
    future_archives:
      description: The archives named more than an hour ahead of this host's clock, never the newest.
      type: list
      elements: str
storage_dir_made:
  description: Whether O(storage_dir) was missing and made (in check mode, would be).
  returned: state=present
  type: bool
holder:
  description:
    - The lease as recorded (owner, run_id, pid, started, renewed, renewed_boottime, stale_after, boot_id, machine_id,
      hostname), without the token.
  returned: state=present
  type: dict
owner_markers:
  description: The owner markers written (this machine's first run with these dirs); already present ones are not listed.
  returned: state=present
  type: list
  elements: str
foreign:
  description: The marker or lease of the other machine that made the module refuse, or null.
  returned: when refused because another machine uses the dir
  type: dict
taken_over:
  description: The dead run whose lease was taken over, or null.
  returned: state=present
  type: dict
  contains:
    holder:
      description: Its lease as it was recorded, without the token.
      type: dict
    reason:
      description: Why it counted as dead (not renewed for so long, this machine rebooted, an unreadable lock file).
      type: str
    description:
      description: The dead run and the reason in one sentence, as in the warning.
      type: str
previous_cancel:
  description:
    - The step an earlier run stopped because its controller stopped polling (an AWX cancel), told once, by the first
      run that takes the lock after it; null otherwise. Its C(message) says when; see
      O(alation.backup.pg_basebackup#module:controller_mark).
  returned: state=present, not in check mode
  type: dict
last_drill:
  description:
    - The drill state kept on the host (after writing O(drill) when given), C(last) (the last drill) and C(last_good)
      (the last that passed), each with C(result), C(reason), C(archive), C(duration_s), C(at) and C(at_ts); {} when
      none was recorded.
  returned: state=present, not skipped
  type: dict
drill_due:
  description: Whether this run should drill its archive (O(drill_every_days)); false when it is V(0).
  returned: state=present, not skipped
  type: bool
drill_reason:
  description: Why the drill is due or not, for the record (C(the last good drill (...) is younger than 7 days ...)).
  returned: state=present, not skipped
  type: str
'''

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.alation.backup.plugins.module_utils import _drill, _locks, _watch
from ansible_collections.alation.backup.plugins.module_utils._archive_names import newest_good_info, too_recent
from ansible_collections.alation.backup.plugins.module_utils._runner import shell_argument_spec
from ansible_collections.alation.backup.plugins.module_utils._staging import make_dir
from ansible_collections.alation.backup.plugins.module_utils._users import Accounts


def octal_mode(module, text):
    try:
        mode = int(str(text), 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o7777:
        module.fail_json(msg="storage_dir_mode=%s must be an octal mode such as '0755'" % text)
    return mode


def drill_state(module, directory, write, **result):
    """``result`` with the drill state beside the lock (written first when O(drill) is given and ``write``)."""
    p = module.params
    try:
        state = _drill.record(directory, p['drill']) if p['drill'] and write else _drill.read_state(directory)
    except (OSError, ValueError) as e:
        module.fail_json(msg='could not keep the drill state in %s: %s' % (_drill.state_path(directory), e), **result)
    due, reason = _drill.due(state, p['drill_every_days'])
    return dict(result, last_drill=state, drill_due=due, drill_reason=reason)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', required=True),
            state=dict(type='str', choices=['present', 'absent', 'inspect'], default='present'),
            storage_dir=dict(type='path'),
            pg_staging_dir=dict(type='path'),
            run_id=dict(type='str'),
            owner=dict(type='str', default='unknown'),
            stale_after=dict(type='int', default=600),
            token=dict(type='str', no_log=True),
            min_interval=dict(type='float', default=0),
            storage_dir_mode=dict(type='str', default='0755'),
            storage_dir_owner=dict(type='str'),
            storage_dir_group=dict(type='str'),
            drill_every_days=dict(type='float', default=0),
            drill=dict(type='dict', options=dict(
                result=dict(type='str', required=True, choices=list(_drill.RESULTS)),
                reason=dict(type='str', default=''),
                archive=dict(type='str', default=''),
                duration_s=dict(type='float', default=0))),
            **shell_argument_spec()
        ),
        required_if=[('state', 'present', ['run_id']), ('state', 'absent', ['token'])],
        supports_check_mode=True,
    )
    p = module.params
    path = p['path']
    if p['drill_every_days'] < 0:
        module.fail_json(msg='drill_every_days=%s must be 0 (off) or more days' % p['drill_every_days'])
    if p['min_interval'] < 0:
        module.fail_json(msg='min_interval=%s must be 0 (off) or more hours' % p['min_interval'])
    if p['state'] != 'absent':
        try:
            markers = _locks.check_owner(p['storage_dir'], p['pg_staging_dir'], path)
        except _locks.ForeignOwner as e:
            module.fail_json(msg='refusing the run, nothing was changed: %s' % e, foreign=e.foreign)
    if p['state'] == 'inspect':
        module.exit_json(changed=False)

    made = False
    if p['state'] == 'present':
        fresh = {}
        storage = p['storage_dir']
        if p['min_interval'] and storage and os.path.isdir(storage):
            fresh = newest_good_info(storage)
            skip = too_recent(fresh, p['min_interval'])
            if skip:
                module.exit_json(changed=False, skip_reason=skip, fresh=fresh, lease={}, storage_dir_made=False)
        result = dict(skip_reason='', fresh=fresh, lease={})
        if storage and not os.path.lexists(storage):
            mode = octal_mode(module, p['storage_dir_mode'])
            try:
                uid, gid = Accounts(p['chroot']).owner_ids(p['storage_dir_owner'], p['storage_dir_group'])
            except ValueError as e:
                module.fail_json(msg=str(e), **result)
            made = True
            if not module.check_mode:
                try:
                    make_dir(storage, mode, uid, gid)
                except OSError as e:
                    module.fail_json(msg='could not make the backup storage dir %s: %s. Check that its parent is a '
                                         'writable directory.' % (storage, e.strerror or e), **result)
        result['storage_dir_made'] = made
    if not os.path.isdir(os.path.dirname(path)) and not (made and module.check_mode):
        module.fail_json(msg='the directory of the lock file %s does not exist: create it first (the backup storage dir)' % path)

    if p['state'] == 'absent':
        if module.check_mode:
            holder = _locks.read_holder(path)
            module.exit_json(changed=bool(holder and holder.get('token') == p['token']))
        module.exit_json(changed=_locks.release_lease(path, p['token']))

    if module.check_mode:
        holder = _locks.read_holder(path) if os.path.lexists(path) else None
        if holder and holder.get('run_id') != p['run_id'] and not _locks.stale_reason(holder, p['stale_after']):
            module.fail_json(msg=str(_locks.LockHeld(path, holder)), holder=_locks.public(holder), **result)
        module.exit_json(changed=True, holder=_locks.public(holder), taken_over=None, owner_markers=[],
                         **drill_state(module, os.path.dirname(path), write=False, **result))

    try:
        record, taken_over = _locks.acquire_lease(path, p['owner'], p['run_id'], p['stale_after'])
    except _locks.LockHeld as e:
        limit = (e.holder or {}).get('stale_after') or p['stale_after']
        module.fail_json(msg='%s. Wait for it to finish: if that run is gone, the lock frees itself once it has not '
                             'been renewed for %ss.' % (e, limit), holder=_locks.public(e.holder), changed=made, **result)
    if taken_over:
        taken_over['description'] = 'took over the host lock %s from %s: %s' % (
            path, _locks.describe(taken_over['holder'], renewed=False), taken_over['reason'])
        module.warn(taken_over['description'])
    try:
        written = _locks.claim_owner(markers)
    except (_locks.ForeignOwner, OSError) as e:
        _locks.release_lease(path, record['token'])
        module.fail_json(msg='refusing the run, the host lock was released: %s' % e, foreign=getattr(e, 'foreign', None),
                         changed=made, **result)
    result['lease'] = dict(path=path, token=record['token'])
    result = drill_state(module, os.path.dirname(path), write=True, **result)
    module.exit_json(changed=True, token=record['token'], holder=_locks.public(record), taken_over=taken_over,
                     owner_markers=written, previous_cancel=_watch.take_unreported(os.path.dirname(path)), **result)


if __name__ == '__main__':
    main()
