#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
module: archive
short_description: Pack the staging dir and the pg staging dir into one verified Alation backup archive
version_added: 0.2.0
author: alation.backup maintainers (@alation-backup)
description:
  - Writes C(<timestamp>_<version_tag>_<suffix>.tar.gz) into the backup storage dir O(storage_dir), the file name
    Alation's Backup V1 restore expects, and C(<archive>.sha256) beside it in C(sha256sum -c) format.
  - The archive is one standard gzip stream holding a GNU-format tar that C(tar -xzf) and Python's C(tarfile)
    read. Symlinks are stored as symlinks (never followed); modes, owners (ids and names) and mtimes are kept;
    hard links are stored as links. Sparse files are stored in full (their holes as zeros), which is correct
    but takes their apparent size. FIFOs, sockets and device files are refused, naming the path.
  - Its first member is C(alation_backup_manifest.json) with the manifest format version, the host, the
    timestamp, the version tag, the compressor, each source with its counts and bytes, and O(manifest_extra).
  - The sources are scanned (lstat only) before anything is written, for the manifest, the space check and the
    verification.
  - The archive is written to a hidden temporary file C(.<archive>.<host>.<pid>.tmp) in O(storage_dir) and read
    back completely from that file (gzip CRC and length, and the tar index read by Python's C(tarfile); member
    count and file bytes must match what was written). With 4 or more CPUs the reader follows the file while it
    is written, so the check adds little time; with fewer it reads after the write (about 1 s per GB). The file is then fsynced, given O(mode), O(owner) and
    O(group), and only then renamed into place, the C(.sha256) first and the archive last.
  - So an archive under its final name is always complete, verified, and has its checksum.
    On failure the temporary files are removed; after a kill, the next run removes temporary files of this
    host whose writer process is gone (only files matching that exact pattern).
  - An archive of the same name is never overwritten (the task fails). A C(.sha256) without its archive is a
    leftover of an interrupted run and is replaced.
  - The SHA-256 is computed from the compressed bytes as they are written, not in a second pass.
  - 'Compression uses every core and still writes one standard gzip stream. O(compressor=auto) picks the
    fastest present: the C(isal) Python package (ISA-L, in-process threads), the C(igzip) program, the
    C(pigz) program, else the standard library zlib, deflating blocks in parallel threads (the pigz
    technique). Programs are fed through a pipe and their output is read back by the module, hashed and
    written.'
  - 'O(compression_level) 1-9 is given as is to zlib and pigz. ISA-L (isal, igzip) has levels 1-3:
    1-3 -> 1, 4-6 -> 2, 7-9 -> 3. So the default 6 is ISA-L level 2, whose output is about 8% larger than
    gzip -6 and many times faster.'
  - Memory use does not grow with the size of the data (about 50 MB at most with the defaults).
  - With O(encrypt_recipient) the archive is encrypted with GnuPG to that public key while it is written
    (tar, gzip, then C(gpg --encrypt) into the temporary file; no plaintext archive on disk, though the
    staging dirs it packs are plain files) and named
    C(<timestamp>_<version_tag>_<suffix>.tar.gz.gpg), its C(.sha256) that of the encrypted file. The gzip stream
    is still read back and checked on its way into gpg (through a pipe, in memory); the file is read back, hashed,
    and its packets checked (C(gpg --list-packets)) to be a message encrypted to that key. Only the secret key
    decrypts it (M(alation.backup.archive_extract) with its C(decrypt_key)); the host never needs it.
extends_documentation_fragment:
  - alation.backup.attributes
  - alation.backup.shell
  - alation.backup.lease
  - alation.backup.controller
options:
  sources:
    description:
      - What to pack. Each item is a dict with C(path) (a directory or a file), C(arcname) (its top-level name in
        the archive; default the last part of C(path)) and C(optional) (default V(false)).
      - The backup role passes the staging dir as C(tmp) and the pg staging dir as C(pgbackup).
      - A missing C(path) fails the task unless C(optional=true); the manifest then records it as not present.
      - C(path) itself must not be a symlink (it would not be followed); give the real path.
      - Required with O(state=present).
    type: list
    elements: dict
  storage_dir:
    description:
      - The backup storage dir. It must exist.
      - It may be a parent of a source (the pg staging dir usually is inside it), but not inside a source,
        since the archive would then pack itself.
      - C(dest) and C(dest_dir), its earlier names, still work as aliases.
      - Required with O(state=present).
    type: path
    aliases: [dest, dest_dir]
  version_tag:
    description:
      - Required with O(state=present).
      - Alation version C(major-minor-patch-build), as in V(5-17-0-116556). V(5.17.0.116556) is accepted and
        written with dashes.
    type: str
  timestamp:
    description:
      - C(YYYYMMDDHHMM) (UTC) at the start of the archive's name, or V(auto).
      - V(auto) takes the current minute (UTC). When an archive of that name is already in O(storage_dir) (a run
        earlier in the same minute), it takes the next minute, and waits until that minute starts (a minute at
        most) before writing. Check mode reports the name it would take, without waiting.
      - A timestamp given is used as it is; an archive of that name already in O(storage_dir) fails the task.
    type: str
    default: auto
  suffix:
    description:
      - Last part of the archive's name. Letters, digits, C(_) and C(-) only.
    type: str
    default: alation_backup
  compression_level:
    description:
      - gzip level 1 (fastest) to 9 (smallest). See the description for the mapping onto ISA-L.
    type: int
    default: 6
  threads:
    description:
      - Compression threads. Default all CPUs this process may run on.
    type: int
  mode:
    description:
      - Permissions of the archive and its C(.sha256), as an octal string (quote it in YAML).
    type: raw
    default: '0600'
  owner:
    description:
      - Owner (name or uid) of the archive and its C(.sha256), an account of the Alation shell with O(chroot). Default the
        user running the module.
    type: str
  group:
    description:
      - Group (name or gid) of the archive and its C(.sha256). Omit for O(owner)'s primary group (without O(owner),
        the group of the user running the module).
    type: str
  space_check:
    description:
      - Before writing, fail if the free space in O(storage_dir) is less than the uncompressed size of the sources
        (the worst case). Running out of space while writing fails cleanly either way.
    type: bool
    default: true
  compressor:
    description:
      - V(auto) picks the fastest present; naming one forces it (it fails, saying how to install it, when absent).
    type: str
    choices: [auto, isal, igzip, pigz, zlib]
    default: auto
  encrypt_recipient:
    description:
      - The full fingerprint (40 hex digits, spaces allowed) of the GnuPG public key to encrypt the archive to.
        Empty or omitted writes a plain C(.tar.gz).
      - A name, an e-mail or a short key id is refused, since it could pick another key.
      - The key is taken from O(encrypt_public_key), else exported from the keyring O(gpg_homedir), and
        imported alone into a private keyring made for this run (in C(/dev/shm) where there is one) and removed
        afterwards. C(gpg) must be installed on the host.
    type: str
  encrypt_public_key:
    description:
      - The ASCII-armored public key of O(encrypt_recipient) (C(gpg --armor --export <fingerprint>)). A secret key
        is refused; the host that writes archives must not be able to read them.
    type: str
  gpg_homedir:
    description:
      - Without O(encrypt_public_key), the keyring on the host (a GnuPG home directory) holding the public key of
        O(encrypt_recipient); default C(~/.gnupg) of the user running the module. It is only read. A keyring that
        also holds the secret key is refused.
    type: path
  state:
    description:
      - V(present) writes the archive.
      - V(check) writes nothing and needs neither O(sources) nor O(storage_dir). It checks, before a run touches
        anything, what would otherwise fail only at the archive step, hours later. With O(encrypt_recipient),
        the key exactly as V(present) takes it (from O(encrypt_public_key) or O(gpg_homedir)), that it is that
        fingerprint's, neither expired nor revoked, that it can encrypt (a trial message is encrypted to it in
        the private keyring, which is then removed), and that C(gpg) is there; and that O(compressor) is
        present. It returns only RV(encrypted), RV(recipient) and RV(compressor), and never changes anything.
    type: str
    choices: [present, check]
    default: present
  manifest_extra:
    description:
      - Extra top-level keys for the manifest (the backup role adds the pg_probackup backup id and mode).
        Keys the module sets itself are refused.
    type: dict
    default: {}
attributes:
  check_mode:
    support: full
    details:
      - Validates everything, scans the sources and checks the space, returns the would-be path (with
        O(timestamp=auto), the name a real run would take, without waiting for its minute), sizes and manifest,
        and the temporary files a real run would remove; writes and removes nothing.
  diff_mode:
    support: none
    details: A new archive has no useful diff; the result describes it.
  platform:
    platforms: posix
notes:
  - Only the Python standard library is needed on the managed host; C(isal), C(igzip) and C(pigz)
    are optional accelerators.
  - The module never reports C(changed=false). Each run writes a new archive. With O(timestamp=auto) a run
    right after another takes the next minute; running again with the same given O(timestamp) fails because
    that archive exists.
'''

EXAMPLES = r'''
- name: Pack the staging dir and the pg staging dir
  alation.backup.archive:
    sources:
      - path: /opt/alation/alation/data2/tmp
        arcname: tmp
      - path: /opt/alation/alation/data2/backup/pgbackup
        arcname: pgbackup
    storage_dir: /opt/alation/alation/data2/backup
    version_tag: "{{ alation_version_tag }}"
    manifest_extra:
      pg_backup_id: "{{ pg_backup.backup_id }}"
      pg_backup_mode: FULL
    owner: alationadmin
    chroot: /opt/alation/alation
  register: archive

- name: Show where it went
  ansible.builtin.debug:
    msg: "{{ archive.path }} ({{ archive.size }} bytes, {{ archive.compressor }}, {{ archive.throughput_mb_s }} MB/s)"
'''

RETURN = r'''
path:
  description: The archive (in check mode, where it would be).
  returned: always
  type: str
  sample: /data2/backup/202405011230_5-17-0-116556_alation_backup.tar.gz
timestamp:
  description: The archive's timestamp, C(YYYYMMDDHHMM) (UTC); with O(timestamp=auto), the minute it took.
  returned: always
  type: str
  sample: '202405011230'
waited_s:
  description: Seconds waited for the archive's minute to start (O(timestamp=auto) after a run in the same
    minute); 0 otherwise.
  returned: success and not check mode
  type: float
  sample: 0
size:
  description: Size of the archive in bytes.
  returned: success and not check mode
  type: int
  sample: 148700000
sha256:
  description: SHA-256 of the archive, as in the C(.sha256) file.
  returned: success and not check mode
  type: str
sha256_path:
  description: The C(<archive>.sha256) file, in C(sha256sum -c) format.
  returned: always
  type: str
members:
  description: Number of tar members, the manifest included (read back and checked).
  returned: always
  type: int
  sample: 21245
source_bytes:
  description: Bytes of regular file data packed.
  returned: always
  type: int
sources:
  description: Per source, C(path), C(arcname), C(present), C(entries), C(files), C(dirs), C(symlinks),
    C(hardlinks), C(bytes).
  returned: always
  type: list
  elements: dict
compressor:
  description: The compressor that ran (in check mode, that would run).
  returned: always
  type: str
  sample: isal
compression_level:
  description: The level given to that compressor (ISA-L has 1-3).
  returned: always
  type: int
  sample: 2
threads:
  description: Compression threads.
  returned: always
  type: int
verified_with:
  description: What decompressed the archive to verify it (isal, igzip, pigz or zlib).
  returned: success and not check mode
  type: str
executed_commands:
  description: Command lines of the compressor or decompressor programs run (igzip, pigz); empty when both ran
    in-process.
  returned: success and not check mode
  type: list
  elements: str
  sample: ["/usr/bin/pigz -c -n -6 -p 8", "/usr/bin/igzip -dc"]
duration_s:
  description: Seconds from the first byte written to the archive in place.
  returned: success and not check mode
  type: float
throughput_mb_s:
  description: Source bytes per second over RV(duration_s), in MB (10^6 bytes).
  returned: success and not check mode
  type: float
manifest:
  description: The manifest stored as the archive's first member.
  returned: always
  type: dict
encrypted:
  description: Whether the archive is encrypted with GnuPG (O(encrypt_recipient)).
  returned: always
  type: bool
recipient:
  description: The fingerprint of the primary key the archive is encrypted to, or null.
  returned: always
  type: str
removed_stale_tmp:
  description: Temporary files of interrupted earlier runs that were removed (in check mode, would be).
  returned: always
  type: list
  elements: str
'''

import signal

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.alation.backup.plugins.module_utils import _locks, _watch
from ansible_collections.alation.backup.plugins.module_utils._archive import (
    ArchiveError, Plan, check_before_run, create_archive)
from ansible_collections.alation.backup.plugins.module_utils._archive_names import DEFAULT_SUFFIX
from ansible_collections.alation.backup.plugins.module_utils._gzip import COMPRESSORS
from ansible_collections.alation.backup.plugins.module_utils._runner import shell_argument_spec


def _terminated(signum, frame):
    # An exception, so the temporary file is removed on the way out.
    raise ArchiveError('terminated by signal %d while archiving; the temporary file was removed' % signum)


def failed(module, lease, msg):
    # Once the lease is kept, a cancel (the controller stopped polling) explains whatever failed after it.
    (lease.fail_json if lease is not None else module.fail_json)(msg=msg)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            sources=dict(type='list', elements='dict'),
            storage_dir=dict(type='path', aliases=['dest', 'dest_dir']),
            version_tag=dict(type='str'),
            state=dict(type='str', default='present', choices=['present', 'check']),
            timestamp=dict(type='str', default='auto'),
            suffix=dict(type='str', default=DEFAULT_SUFFIX),
            compression_level=dict(type='int', default=6),
            threads=dict(type='int'),
            mode=dict(type='raw', default='0600'),
            owner=dict(type='str'),
            group=dict(type='str'),
            space_check=dict(type='bool', default=True),
            compressor=dict(type='str', default='auto', choices=['auto'] + list(COMPRESSORS)),
            manifest_extra=dict(type='dict', default={}),
            encrypt_recipient=dict(type='str'),
            encrypt_public_key=dict(type='str'),
            gpg_homedir=dict(type='path'),
            **dict(shell_argument_spec(), **dict(_locks.lease_argument_spec(), **_watch.watch_argument_spec()))
        ),
        required_if=[('state', 'present', ('sources', 'storage_dir', 'version_tag'))],
        supports_check_mode=True,
    )
    if module.params['state'] == 'check':
        try:
            module.exit_json(changed=False, **check_before_run(module.params))
        except ArchiveError as e:
            module.fail_json(msg=str(e), changed=False)
    lease = None
    try:
        plan = Plan(module.params)
        if module.check_mode:
            preview = plan.preview()
            plan.close()
            module.exit_json(**preview)
        previous = signal.signal(signal.SIGTERM, _terminated)
        lease = _locks.leased(module, 'touching the backup storage dir further: no archive was published, its '
                                      'temporary files were removed', _watch.guard(module, 'archive'))
        try:
            with lease:
                result = create_archive(plan, lease_check=lease.check)
        finally:
            signal.signal(signal.SIGTERM, previous)
            plan.close()  # the private keyring of the encryption
    except ArchiveError as e:
        failed(module, lease, str(e))
    except OSError as e:
        failed(module, lease, 'archiving failed: %s' % e)
    except KeyboardInterrupt:
        # The controller watch stops a writer busy in Python this way, once the temporary file is removed.
        failed(module, lease, 'archiving interrupted; the temporary file was removed')
    lease.exit_json(done='The archive %s was written and verified.' % result.get('path'), **result)


if __name__ == '__main__':
    main()
