#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
module: offsite_copy
short_description: Copy an Alation backup archive and its .sha256 to a backup host over SSH or to an object store, and keep retention there
version_added: 0.2.0
author: alation.backup maintainers (@alation-backup)
description:
  - Copies the archive O(src) and its C(.sha256) into C(<path>/<host_dir>/) on the backup host O(dest), over SSH.
    rsync is used when both ends have it, else a plain stream (C(ssh host 'cat > tmp')); O(method) can force one.
  - Each file is written under a hidden temporary name, both are hashed on the far side with C(sha256sum) and must
    match the local C(.sha256) (and the C(.sha256) itself), then they are renamed, the archive first. A failure
    removes the temporary files it made there and leaves the local archive as it was.
  - The host key is checked against O(known_hosts) (C(StrictHostKeyChecking=yes)); the key is O(identity_file) (or
    O(identity_content)), or the SSH agent at O(ssh_auth_sock). No secret is ever on a command line.
  - ssh reads no ssh_config (C(-F /dev/null)), so a site's C(ForwardAgent yes) or host-key settings never reach the
    copy; the options it needs are given explicitly (C(BatchMode), C(StrictHostKeyChecking), C(ForwardAgent=no)).
  - Before anything is sent, the per-host dir's owner marker (C(.alation-backup-owner), the machine id and host name
    of the machine that first copied there) must name this machine - a dir of another machine is refused, nothing
    is written or removed there; this host's temporary files there whose writer (a pid of this host) is dead - a
    copy killed mid-way - are removed; and when C(df) there shows less room than the archive and its C(.sha256)
    need, retention runs there first (as for the next archive). A copy that still does not fit fails naming the free
    and the needed bytes.
  - A copy that failed is reported in RV(copy) and as a warning; the task fails only with O(required=true).
  - With O(keep_count), retention runs on the far side with the same rules as M(alation.backup.retention) - only
    this collection's archive names and their C(.sha256), never the newest, which must hash to its C(.sha256) there
    before anything older goes; the tiers (O(keep_daily), O(keep_weekly), O(keep_monthly)) and the pins
    (O(keep_pinned), or a C(<archive>.keep) file beside it there) as well.
  - Runs on the Alation host, outside the Alation shell. Needs C(ssh) there, and a POSIX shell, C(sha256sum),
    C(df), C(mv) and C(rm) on the backup host.
  - "With O(dest) C(s3://bucket/prefix) the copy goes to an S3 or S3-compatible object store through C(rclone) on
    the host (O(method=auto) picks V(rclone)): into C(<prefix>/<host_dir>/), claimed by the same owner marker object.
    The archive goes straight to its final key - an S3 upload (single PUT, or multipart completed only at the end) is
    visible whole or not at all, so a killed upload leaves nothing under the final name - then its C(.sha256). Both
    are verified with C(rclone check) (the size the store lists, and the MD5 it reports - the store's ETag for a
    single-part upload; for a multipart one the store checked each part's MD5 and rclone the multipart ETag, and the
    whole-file MD5 compared is the one rclone stored with the object). A failure removes what it uploaded.
    Retention there takes the same decision; the newest archive there is vouched for by its C(.sha256) there (its
    size), or by this run's verified copy. The credentials (O(s3_access_key_id), O(s3_secret_access_key)) reach
    rclone through its environment only; without them, the host's own (C(AWS_*) environment, EC2 instance role)."
extends_documentation_fragment:
  - alation.backup.attributes
  - alation.backup.lease
  - alation.backup.controller
  - alation.backup.retention_rules
options:
  src:
    description: The archive (a host path). Its C(.sha256) must be beside it. Required with O(state=present).
    type: path
  state:
    description:
      - V(present) copies O(src).
      - V(check) copies nothing and needs no O(src); it checks, before a run touches anything, what the copy will
        need - that the backup host answers over ssh with its host key known and the key let in, that the per-host
        dir is there (made when missing) and takes a file (a hidden probe file, written and removed), and that
        O(method) can run. Any failure fails the task, whatever O(required); RV(check) says what was checked. In
        check mode nothing runs.
    type: str
    choices: [present, check]
    default: present
  dest:
    description:
      - The backup host and directory, as C([user@]host:/path), C(ssh://[user@]host[:port]/path), or a dict with
        C(host), C(port), C(user) and C(path).
      - Or an object store, C(s3://bucket/prefix).
    type: raw
    required: true
  host_dir:
    description: The per-host directory under the path, one name (the inventory name).
    type: str
    required: true
  identity_file:
    description: The private key file. Without it, the SSH agent at O(ssh_auth_sock) (and ssh's defaults) are used.
    type: path
  identity_content_file:
    description:
      - A 0600 file on tmpfs holding the key's text, written by M(alation.backup.secret_file) right before this task;
        read and removed as the module starts, then treated as O(identity_content). So the key sits in no task
        payload on disk while a long copy runs, nor after a cancel.
    type: path
    version_added: 0.2.0
  identity_content:
    description:
      - The private key itself. It is written to a 0600 file in a 0700 dir on tmpfs (C(/run) or C(/dev/shm)), named
        C(alation-backup-ssh.<host label>.<pid>.*), for this copy only, and removed when the module ends; a dir that a
        killed copy of this host left is removed by the next run. Never logged.
      - Mutually exclusive with O(identity_file) and O(identity_content_file).
    type: str
  known_hosts_content:
    description: The text of a known_hosts file, written beside O(identity_content) the same way. Mutually exclusive
      with O(known_hosts).
    type: str
  known_hosts:
    description:
      - The known_hosts file that must hold the backup host's key; only it is read. Without it, ssh's own
        (C(~/.ssh/known_hosts), C(/etc/ssh/ssh_known_hosts)).
    type: path
  ssh_auth_sock:
    description: The SSH agent's socket. Without it, the module's own C(SSH_AUTH_SOCK) stays as it is.
    type: path
  method:
    description: V(auto) takes rsync when both ends have it, else V(stream); for an C(s3://) O(dest), V(rclone).
    type: str
    choices: [auto, rsync, stream, rclone]
    default: auto
  s3_endpoint:
    description: The S3 endpoint URL of an S3-compatible store (C(https://minio.example.com:9000)). Without it, AWS.
    type: str
    version_added: 0.2.0
  s3_region:
    description: The bucket's region (C(eu-west-1)). Without it, rclone's default (C(us-east-1)) or the host's.
    type: str
    version_added: 0.2.0
  s3_access_key_id:
    description: The access key id. Without it (and O(s3_secret_access_key)), the host's own credentials - its C(AWS_*)
      environment or its EC2 instance role (rclone's C(env_auth)).
    type: str
    version_added: 0.2.0
  s3_secret_access_key:
    description: The secret access key, given with O(s3_access_key_id). Never logged; reaches rclone through its
      environment only.
    type: str
    version_added: 0.2.0
  s3_secret_access_key_file:
    description:
      - A 0600 file on tmpfs holding O(s3_secret_access_key), written by M(alation.backup.secret_file) right before
        this task; read and removed as the module starts, so the secret sits in no task payload on disk.
    type: path
    version_added: 0.2.0
  connect_timeout:
    description: Seconds ssh waits for the backup host to answer.
    type: int
    default: 30
  keep_count:
    description:
      - Archives kept on the far side by retention. V(0), the default, turns retention there off (as in
        M(alation.backup.retention)); the backup role passes C(alation_backup_keep_count), 7 unless set.
    type: int
    default: 0
  keep_days:
    description: Also keep every archive younger than this many days on the far side. V(0) turns this rule off.
    type: int
    default: 0
  suffix:
    description: The last part of the archive names.
    type: str
    default: alation_backup
  required:
    description: Fail the task when the copy failed, instead of only reporting it.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    details: In check mode nothing is sent or removed; RV(copy) says so and RV(executed_commands) what would run.
  diff_mode:
    support: none
  platform:
    platforms: posix
'''

EXAMPLES = r'''
- name: Copy the newest archive to the backup host, keeping 14 there
  alation.backup.offsite_copy:
    src: /opt/alation/alation/data2/backup/202611300102_5-17-0-116556_alation_backup.tar.gz
    dest: backup@backuphost.example.com:/srv/alation-backups
    host_dir: "{{ inventory_hostname }}"
    identity_file: /root/.ssh/alation_backup_copy
    known_hosts: /etc/alation-backup/known_hosts
    keep_count: 14
  register: copy

- name: The same with a dict, a port, and the SSH agent
  alation.backup.offsite_copy:
    src: "{{ archive }}"
    dest: {host: backuphost.example.com, port: 2222, user: backup, path: /srv/alation-backups}
    host_dir: "{{ inventory_hostname }}"
    ssh_auth_sock: "{{ ansible_env.SSH_AUTH_SOCK }}"
    required: true

- name: To an S3 bucket with the host's instance role, keeping 14 there
  alation.backup.offsite_copy:
    src: "{{ archive }}"
    dest: s3://acme-alation-backups/prod
    host_dir: "{{ inventory_hostname }}"
    s3_region: eu-west-1
    keep_count: 14
'''

RETURN = r'''
copy:
  description: What happened to the copy.
  returned: always
  type: dict
  contains:
    result:
      description: V(ok) (copied, or already there and verified), V(failed), or V(skipped) (check mode).
      type: str
    dest:
      description: Where the archive is on the backup host, C(user@host:/path/host_dir/name).
      type: str
    bytes:
      description: The archive's size.
      type: int
    duration_s:
      description: Seconds the copy and the retention there took.
      type: float
    error:
      description: Why the copy failed, or empty.
      type: str
    method:
      description: V(rsync), V(stream) or V(rclone); empty when nothing was sent.
      type: str
    verified:
      description: For an object store, what the check there compared - V(size and md5); empty for SSH (sha256 there).
      type: str
      returned: when O(dest) is an object store
    retention:
      description:
        - Retention on the far side - the files removed (before the copy when it needed the room, and after), the bytes
          freed, why nothing could go (C(refused)), and C(kept) - each archive kept there with the rules that keep it,
          as RV(alation.backup.retention#module:kept) of M(alation.backup.retention).
      type: dict
    removed_tmp:
      description: This host's temporary files on the far side that a killed copy left (their pid here is dead), removed.
      type: list
      elements: str
    free_bytes:
      description: Free bytes on the far side that C(df) reported before sending (after retention when it ran for room);
        null when df there said nothing readable or nothing was to be sent.
      type: int
    needed_bytes:
      description: Bytes the archive and its C(.sha256) need there (in whole 4 KiB blocks); 0 when nothing was sent.
      type: int
removed_key_dirs:
  description: Key dirs that killed copies of this host left on tmpfs (their pid is dead), removed.
  returned: always
  type: list
  elements: str
check:
  description: With O(state=check), what was checked - C(result) (V(ok), or V(skipped) in check mode), C(dest) and
    the C(method) a copy would take.
  returned: state=check
  type: dict
executed_commands:
  description: The commands run (or, in check mode, that would run).
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.alation.backup.plugins.module_utils import _locks, _objstore, _offsite, _retention, _watch
from ansible_collections.alation.backup.plugins.module_utils._archive_names import DEFAULT_SUFFIX
from ansible_collections.alation.backup.plugins.module_utils._host import HostError
from ansible_collections.alation.backup.plugins.module_utils._runner import Runner
from ansible_collections.alation.backup.plugins.module_utils._secret_file import (
    secret_file_argument_spec, take_secret_options)


def key_dir(module):
    """The key and known_hosts given as text, in a private dir on tmpfs (close() removes it); None in check mode."""
    p = module.params
    return None if module.check_mode else _offsite.KeyDir(p['identity_content'], p['known_hosts_content'])


def copier(runner, p, keys):
    if _objstore.is_object_target(p['dest']):
        if p['method'] not in ('auto', 'rclone'):
            raise _offsite.CopyError('method %s cannot copy to %s: use auto or rclone' % (p['method'], p['dest']))
        return _objstore.ObjCopier(runner, _objstore.parse_target(p['dest']), p['host_dir'], p['s3_endpoint'],
                                   p['s3_region'], p['s3_access_key_id'], p['s3_secret_access_key'],
                                   p['connect_timeout'])
    if p['method'] == 'rclone':
        raise _offsite.CopyError('method rclone copies to an object store (s3://bucket/prefix), not to %s' % (p['dest'],))
    return _offsite.Copier(runner, _offsite.parse_target(p['dest']), p['host_dir'],
                           keys.identity_file if keys and keys.identity_file else p['identity_file'],
                           keys.known_hosts if keys and keys.known_hosts else p['known_hosts'],
                           p['ssh_auth_sock'], p['method'], p['connect_timeout'])


def check(module, runner, removed_key_dirs):
    """state=check: can the backup host take a copy (reachable, host key known, per-host dir writable)?"""
    keys = None
    try:
        keys = key_dir(module)
        copy = copier(runner, module.params, keys)
        found = (copy.check_target if isinstance(copy, _objstore.ObjCopier) else
                 lambda check_mode: _offsite.check_target(copy, check_mode))(module.check_mode)
    except HostError as e:
        module.fail_json(msg='the backup host cannot take the copy: %s' % e, removed_key_dirs=removed_key_dirs,
                         executed_commands=runner.executed_commands)
    finally:
        if keys is not None:
            keys.close()
    module.exit_json(changed=bool(removed_key_dirs), check=found, removed_key_dirs=removed_key_dirs,
                     executed_commands=runner.executed_commands)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            src=dict(type='path'),
            state=dict(type='str', default='present', choices=['present', 'check']),
            dest=dict(type='raw', required=True),
            host_dir=dict(type='str', required=True),
            identity_file=dict(type='path'),
            identity_content=dict(type='str', no_log=True),
            known_hosts=dict(type='path'),
            known_hosts_content=dict(type='str'),
            ssh_auth_sock=dict(type='path'),
            method=dict(type='str', default='auto', choices=list(_offsite.METHODS) + ['rclone']),
            s3_endpoint=dict(type='str'),
            s3_region=dict(type='str'),
            s3_access_key_id=dict(type='str'),
            s3_secret_access_key=dict(type='str', no_log=True),
            connect_timeout=dict(type='int', default=30),
            keep_count=dict(type='int', default=0),
            keep_days=dict(type='int', default=0),
            suffix=dict(type='str', default=DEFAULT_SUFFIX),
            required=dict(type='bool', default=False),
            **dict(_locks.lease_argument_spec(), **dict(_watch.watch_argument_spec(), **dict(
                _retention.rules_argument_spec(), **secret_file_argument_spec('identity_content', 's3_secret_access_key'))))
        ),
        mutually_exclusive=[('identity_file', 'identity_content', 'identity_content_file'),
                            ('known_hosts', 'known_hosts_content'), ('s3_secret_access_key', 's3_secret_access_key_file')],
        required_if=[('state', 'present', ('src',))],
        supports_check_mode=True,
    )
    p = module.params
    take_secret_options(module, 'identity_content', 's3_secret_access_key')
    # The rules of retention there, checked before anything is sent: a copy never fails late over a typo in them.
    rules = _retention.rules_from(p)
    try:
        if _retention.off_with_tiers(rules):
            raise HostError(_retention.off_with_tiers(rules))
        if p['keep_count'] > 0:
            _retention.check_rules(rules)
    except HostError as e:
        module.fail_json(msg='retention on the backup host: %s' % e)
    runner = Runner(module)
    # What a killed copy left: its key dir, on tmpfs, gone with its pid.
    removed_key_dirs = [] if module.check_mode else _offsite.remove_dead_key_dirs()
    if p['state'] == 'check':
        check(module, runner, removed_key_dirs)
    # A copy over a slow link can take longer than the lock's stale_after: keep the host's lock alive; and it
    # runs in the background, so it stops itself (ssh, rsync) once its controller stops polling (an AWX cancel).
    lease = _locks.leased(module, 'renaming or removing anything more on the backup host (a copy still under '
                                  'temporary names was removed)', _watch.guard(module, 'copy'))
    lease.result.update(executed_commands=runner.executed_commands)
    keys = None
    try:
        with lease:
            keys = key_dir(module)
            copy = copier(runner, p, keys)
            copy.lease_check = lease.check
            changed, record, warnings = _offsite.run_copy(copy, p['src'], rules, p['suffix'], module.check_mode)
    except HostError as e:
        changed, warnings = False, []
        record = dict(result='failed', dest='', bytes=0, duration_s=0.0, error=str(e), method='',
                      retention=dict(removed=[], freed_bytes=0, refused='', kept=[]), removed_tmp=[], free_bytes=None,
                      needed_bytes=0)
    finally:
        if keys is not None:
            keys.close()
    changed = changed or bool(removed_key_dirs)
    if record['result'] == 'failed':
        if p['required']:
            lease.fail_json('off-host copy of %s: %s' % (p['src'], record['error']), copy=record,
                            removed_key_dirs=removed_key_dirs)
        warnings.append('off-host copy of %s failed (the local archive is kept): %s' % (p['src'], record['error']))
    for warning in warnings:
        module.warn(warning)
    lease.exit_json(changed=changed, copy=record, removed_key_dirs=removed_key_dirs,
                    executed_commands=runner.executed_commands)


if __name__ == '__main__':
    main()
