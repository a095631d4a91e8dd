# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The off-host copy: an archive and its .sha256 to a backup host over SSH, and retention there.

Into ``<path>/<host dir>/`` on the backup host, each file under a temporary
name (``_archive_names.tmp_name``: hidden, so retention there never takes it
for an archive), with rsync when both ends have it, else a plain stream
(``ssh host 'cat > tmp'``). Both temporary files must hash on the far side
(``sha256sum`` over ssh) to what the local .sha256 records (the archive) and
to the local .sha256 itself, before they are renamed to their final names,
the archive first (as the archive module publishes them). A failure removes
the temporary files it made and leaves the local archive as it was.

The host key is checked (``StrictHostKeyChecking=yes``) against the
known_hosts file given, or ssh's own; the key is a file given by path (or its
content, written by ``KeyDir`` to a private dir on tmpfs removed in a
``finally``), or the SSH agent at ``SSH_AUTH_SOCK``, which goes in the
environment. No secret is ever on a command line. ssh reads no ssh_config
(``-F /dev/null``): a site's ``ForwardAgent yes`` or host-key settings never
reach the copy. Retention on the far side takes the same decision as on this
host (``_retention.plan_listing``, the same rules dict: count, days, tiers,
pins) over a listing taken over ssh (a ``<archive>.keep`` there pins it); the newest
archive there must hash to its .sha256 before anything older goes.

Before it sends anything, a copy checks the per-host dir's owner marker (a
dir another machine owns is refused: two hosts with one host_dir would
overwrite and prune each other's copies), removes this host's temporary files
there whose writer is dead (a copy killed mid-way), and, when the far side
lacks room for the archive, runs retention there first.

Standard library only; needs ssh here, and a POSIX shell, sha256sum, mv and
rm on the backup host.
"""

import collections
import os
import posixpath
import re
import shlex
import shutil
import socket
import stat
import tempfile
import time

from ansible_collections.alation.backup.plugins.module_utils._archive_names import (
    ARCHIVE_RE, DEFAULT_SUFFIX, SHA256_LINE_RE, SIZE_LINE_RE, dead_tmp_names, host_label, machine_id, read_sidecar,
    sha256_of, tmp_name)
from ansible_collections.alation.backup.plugins.module_utils._host import HostError, human, pid_alive, write_file
from ansible_collections.alation.backup.plugins.module_utils._retention import plan_listing
from ansible_collections.alation.backup.plugins.module_utils._runner import (
    NOT_RUN, find_program, join_argv, not_found, start)

METHODS = ('auto', 'rsync', 'stream')
# ssh's own exit code when it, not the remote command, failed (refused host key, no route, bad key).
SSH_FAILED = 255
HOST_RE = re.compile(r'^[A-Za-z0-9_.:%-]+$')
USER_RE = re.compile(r'^[A-Za-z0-9_.][A-Za-z0-9_.-]*\$?$')
HOST_DIR_RE = re.compile(r'^[A-Za-z0-9_.-]+$')
# A far side's file names worth listing: ours never have other characters (nor a newline to forge a line with).
# Hidden ones too: a copy killed mid-way leaves its temporary file, which only this listing can find.
LIST_SCRIPT = ('for f in * .*; do case $f in .|..|*[!A-Za-z0-9._-]*) continue;; esac; '
               'if [ -f "$f" ] && [ ! -h "$f" ]; then printf "F %s %s\\n" "$(wc -c < "$f")" "$f"; '
               'elif [ -e "$f" ] || [ -h "$f" ]; then printf "O 0 %s\\n" "$f"; fi; done')

# In each per-host dir: which machine owns it (a dir of another machine is refused, never written or pruned).
OWNER_MARKER = '.alation-backup-owner'
# A file takes whole blocks on the far side: room is planned in these.
ALLOC_BLOCK = 4096
DF_LINE_RE = re.compile(r'^.+?\s+(?P<blocks>\d+)\s+(?P<used>\d+)\s+(?P<avail>\d+)\s+(?:\d+%|-)\s+/.*$')
# The private dir for the key and known_hosts: on tmpfs, so a secret never reaches a disk; <label>.<pid> says whose.
KEY_DIR_PREFIX = 'alation-backup-ssh'
KEY_DIR_RE = re.compile(r'^%s\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+$' % KEY_DIR_PREFIX)
KEY_DIR_PARENTS = ('/run', '/dev/shm')
MEMORY_FS = ('tmpfs', 'ramfs')

Target = collections.namedtuple('Target', 'user host port path')


class CopyError(HostError):
    """The copy failed; the message says at which step, with what, and what to check."""


def parse_target(value, default_port=22):
    """A Target from ``[user@]host:/path``, ``ssh://[user@]host[:port]/path`` or a dict {host, port, user, path}."""
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(('host', 'port', 'user', 'path')))
        if unknown:
            raise CopyError('copy_to has unknown keys %s: it takes host, port, user and path' % ', '.join(unknown))
        user, host, port, path = value.get('user'), value.get('host'), value.get('port'), value.get('path')
    else:
        text = str(value or '').strip()
        port = None
        m = re.match(r'^ssh://(?:(?P<user>[^@/]+)@)?(?P<host>\[[^\]]+\]|[^:/]+)(?::(?P<port>\d+))?(?P<path>/.*)$', text)
        if not m:
            m = re.match(r'^(?:(?P<user>[^@/:]+)@)?(?P<host>\[[^\]]+\]|[^:/@\[]+):(?P<path>/.*)$', text)
        if not m:
            raise CopyError('copy_to %r: give [user@]host:/path (such as backup@backuphost:/srv/alation-backups), '
                            'ssh://[user@]host[:port]/path, or a dict with host, port, user and path' % (value,))
        user, host, path = m.group('user'), m.group('host'), m.group('path')
        port = m.groupdict().get('port')
        host = host[1:-1] if host.startswith('[') else host
    host = str(host or '')
    if not HOST_RE.match(host) or host.startswith('-'):
        raise CopyError('copy_to host %r is not a host name or address' % (host,))
    user = str(user or '')
    if user and not USER_RE.match(user):
        raise CopyError('copy_to user %r is not a user name' % (user,))
    try:
        port = int(port or default_port)
    except (TypeError, ValueError):
        port = 0
    if not 0 < port < 65536:
        raise CopyError('copy_to port %r must be a number from 1 to 65535' % (value.get('port') if isinstance(value, dict) else port,))
    path = str(path or '')
    if not path.startswith('/') or '\n' in path or '\0' in path:
        raise CopyError('copy_to path %r must be an absolute path on the backup host' % (path,))
    return Target(user, host, port, posixpath.normpath(path))


def host_dir_name(value):
    """The per-host dir's name (the inventory name): one safe path component."""
    text = str(value or '')
    if not HOST_DIR_RE.match(text) or text in ('.', '..'):
        raise CopyError('host_dir %r must be one name of letters, digits, ".", "_" and "-" (the inventory name)'
                        % (value,))
    return text


def _config_value(path):
    # ssh -o takes a config line: a path with blanks must be quoted, and a quote cannot be.
    if '"' in path or '\n' in path:
        raise CopyError('%r: ssh cannot be given a path with a double quote or a newline' % (path,))
    return '"%s"' % path if re.search(r'\s', path) else path


def ssh_options(ssh, target, identity_file=None, known_hosts=None, connect_timeout=30):
    """ssh's argv up to the host: batch mode, the host key checked, the key file by path only.

    ``-F /dev/null``: neither root's ~/.ssh/config nor /etc/ssh/ssh_config is read, so a site's config can
    neither forward the agent to the backup host nor change host-key checking; what the copy needs is here."""
    argv = [ssh, '-F', '/dev/null', '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=yes',
            '-o', 'ForwardAgent=no', '-o', 'ForwardX11=no', '-o', 'ClearAllForwardings=yes',
            '-o', 'PermitLocalCommand=no', '-o', 'UpdateHostKeys=no']
    if known_hosts:
        argv += ['-o', 'UserKnownHostsFile=%s' % _config_value(known_hosts), '-o', 'GlobalKnownHostsFile=/dev/null']
    if identity_file:
        argv += ['-i', identity_file, '-o', 'IdentitiesOnly=yes']
    argv += ['-o', 'ConnectTimeout=%d' % connect_timeout, '-o', 'ServerAliveInterval=15',
             '-o', 'ServerAliveCountMax=4', '-p', str(target.port)]
    if target.user:
        argv += ['-l', target.user]
    return argv


def sidecar_fields(text, name):
    """(hex digest or None, size or None) that a .sha256's text records for archive ``name``."""
    digest = size = None
    for line in text.splitlines():
        m = SHA256_LINE_RE.match(line.strip())
        if m and posixpath.basename(m.group('name')) == name:
            digest = m.group('hex').lower()
        m = SIZE_LINE_RE.match(line.strip())
        if m:
            size = int(m.group('size'))
    return digest, size


def parse_listing(text):
    """``{name: {size} or None}`` from LIST_SCRIPT's output."""
    files = {}
    for line in text.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[0] in ('F', 'O') and parts[1].isdigit():
            files[parts[2]] = dict(size=int(parts[1])) if parts[0] == 'F' else None
    return files


def parse_df(text):
    """Free bytes from ``df -Pk``'s output (its last line), or None when it says nothing we can read."""
    lines = [line for line in (text or '').splitlines() if line.strip()]
    m = DF_LINE_RE.match(lines[-1]) if lines else None
    return int(m.group('avail')) * 1024 if m else None


def blocks(n):
    """Bytes ``n`` take on the far side, in whole ALLOC_BLOCKs."""
    return -(-n // ALLOC_BLOCK) * ALLOC_BLOCK


# -- the owner of the per-host dir -----------------------------------------------------

def this_machine():
    """(machine id, host name) of this host: what the owner marker records."""
    return machine_id(), socket.gethostname()


def owner_text(machine=None):
    mid, host = machine or this_machine()
    return ('# alation.backup: the machine that owns this per-host dir; a copy from another machine is refused\n'
            'machine_id %s\nhost %s\n' % (mid or '-', host or '-'))


def parse_owner(text):
    """``{machine_id, host}`` that an owner marker records ('' for what it does not)."""
    found = dict(machine_id='', host='')
    for line in (text or '').splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in found and parts[1] != '-':
            found[parts[0]] = parts[1]
    return found


def check_owner(text, where, machine=None):
    """Raise CopyError unless the marker ``text`` names this machine (by machine id; by host name where neither
    has one)."""
    mid, host = machine or this_machine()
    owner = parse_owner(text)
    if not owner['machine_id'] and not owner['host']:
        raise CopyError('%s/%s does not say which machine owns the dir (%r): nothing copied. If the dir is this '
                        "host's (%s), remove that file there; else set alation_backup_copy_host_dir to a name no "
                        'other host uses.' % (where, OWNER_MARKER, (text or '').strip()[:200], host))
    ours = owner['machine_id'] == mid if (owner['machine_id'] and mid) else (
        not owner['machine_id'] and not mid and owner['host'] == host)
    if not ours:
        raise CopyError('%s belongs to another machine (%s, machine id %s; this is %s, machine id %s): nothing '
                        'copied, nothing removed there. Two hosts share that per-host dir (the same inventory name in '
                        'two inventories?): set alation_backup_copy_host_dir to a name unique to each host. If the '
                        "dir is this host's own (re-installed), remove %s there."
                        % (where, owner['host'] or '?', owner['machine_id'] or 'unknown', host, mid or 'unknown',
                           OWNER_MARKER))


def parse_sha256sum(text):
    """``{name: hex}`` from sha256sum's output."""
    found = {}
    for line in text.splitlines():
        m = SHA256_LINE_RE.match(line)
        if m:
            found[m.group('name')] = m.group('hex').lower()
    return found


def last_lines(text, n=3):
    lines = [line.strip() for line in (text or '').splitlines() if line.strip()]
    return ' '.join(lines[-n:]) or 'no message'


def send_file(runner, argv, path, env):
    """Run ``argv`` with ``path`` on its stdin (the plain stream): run_command cannot stream a file."""
    cmd = join_argv(argv) + ' < ' + shlex.quote(path)
    runner.executed_commands.append(cmd)
    with open(path, 'rb') as f:
        proc = start(argv, stdin=f, env=env)
        out, err = proc.communicate()
    return dict(cmd=cmd, rc=proc.returncode, stdout=out.decode('utf-8', 'replace'),
                stderr=err.decode('utf-8', 'replace'))


def local_archive(src):
    """The archive to copy and its .sha256, checked before anything is sent: (name, sidecar, digest, bytes).

    CopyError when the archive is no file, its .sha256 is missing or names another, or the sizes differ."""
    name = os.path.basename(src)
    sidecar = src + '.sha256'
    if not os.path.isfile(src):
        raise CopyError('the archive %s is not a file on this host' % src)
    try:
        digest, size = read_sidecar(sidecar, name)
    except ValueError as e:
        raise CopyError('the archive %s cannot be copied without its .sha256: %s' % (src, e))
    actual = os.path.getsize(src)
    if size is not None and size != actual:
        raise CopyError('the archive %s has %d bytes, its .sha256 recorded %d: not copied' % (src, actual, size))
    return name, sidecar, digest, actual


class Copier(object):
    """One archive to one backup host; ``runner`` runs ssh and rsync, ``send`` streams a file into ssh."""

    def __init__(self, runner, target, host_dir, identity_file=None, known_hosts=None, ssh_auth_sock=None,
                 method='auto', connect_timeout=30, ssh=None, rsync=None, send=None):
        if method not in METHODS:
            raise CopyError('method %r must be one of %s' % (method, ', '.join(METHODS)))
        for what, path in (('identity_file', identity_file), ('known_hosts', known_hosts)):
            if path and not os.path.isfile(path):
                raise CopyError('%s %s is not a file on this host' % (what, path))
        self.runner = runner
        self.target = target
        self.dir = posixpath.join(target.path, host_dir_name(host_dir))
        self.method = method
        if ssh is None:
            ssh = find_program(None, 'ssh')[0]
            if not ssh:
                raise CopyError(not_found(None, 'ssh', find_program(None, 'ssh')[1],
                                          'Install the OpenSSH client (Debian openssh-client, RHEL openssh-clients).'))
        if rsync is None and method != 'stream':
            rsync = find_program(None, 'rsync')[0]
        self.rsync = rsync or None
        self.ssh = ssh_options(ssh, target, identity_file, known_hosts, connect_timeout)
        self.env = {'SSH_AUTH_SOCK': ssh_auth_sock} if ssh_auth_sock else {}
        self.send = send or send_file
        # What a copy did before sending: dead temp files removed, retention run for room (and what df said).
        self.removed_tmp = []
        self.room = dict(removed=[], refused='', free_bytes=None, needed_bytes=0)
        self.where = '%s%s:%s' % (target.user + '@' if target.user else '',
                                  '[%s]' % target.host if ':' in target.host else target.host, self.dir)

    # -- the far side ----------------------------------------------------------------

    # The run's lease check (Heartbeat.check), set by the module: called before each far-side rename or removal.
    lease_check = None

    def check_lease(self):
        if self.lease_check is not None:
            self.lease_check()

    def remote_argv(self, script):
        return self.ssh + ['--', self.target.host, script]

    def remote(self, script, step):
        """Run ``script`` (a POSIX shell line, every value quoted) on the backup host; CopyError saying why not."""
        result = self.runner.run(self.remote_argv(script), env=self.env)
        if result['rc'] == SSH_FAILED:
            raise CopyError('%s: ssh to %s port %d failed: %s. Check that alation_backup_copy_known_hosts has the '
                            "backup host's key (StrictHostKeyChecking is on) and that the key or agent is let in."
                            % (step, self.target.host, self.target.port, last_lines(result['stderr'])))
        if result['rc'] != 0:
            raise CopyError('%s on %s failed (exit %d): %s' % (step, self.where, result['rc'],
                                                               last_lines(result['stderr'] or result['stdout'])))
        return result['stdout']

    def in_dir(self, script):
        return 'cd -- %s && %s' % (shlex.quote(self.dir), script)

    def probe(self):
        """Make the per-host dir and claim it (the owner marker, created only where there is none);
        (rsync there?, its listing, the owner marker's text)."""
        marker = shlex.quote(OWNER_MARKER)
        out = self.remote('umask 077 && mkdir -p -- %s && cd -- %s && '
                          # noclobber: O_EXCL, so of two machines claiming a new dir at once only one writes it.
                          '{ [ -e %s ] || [ -h %s ] || (set -C && printf %%s %s > %s) 2>/dev/null || true; } && '
                          '{ if command -v rsync >/dev/null 2>&1; then echo "R yes"; else echo "R no"; fi; } && '
                          '{ { head -c 4096 -- %s 2>/dev/null; echo; } | sed "s/^/M /"; } && %s'
                          % (shlex.quote(self.dir), shlex.quote(self.dir), marker, marker,
                             shlex.quote(owner_text()), marker, marker, LIST_SCRIPT),
                          'making %s' % self.dir)
        lines = out.splitlines()
        owner = '\n'.join(line[2:] for line in lines if line.startswith('M '))
        return 'R yes' in lines, parse_listing(out), owner

    def free_bytes(self):
        """Free bytes in the per-host dir's filesystem (``df -Pk``), or None when df there says nothing readable."""
        try:
            return parse_df(self.remote(self.in_dir('df -Pk -- .'), 'asking df for the free space in %s' % self.dir))
        except CopyError:
            return None

    def remove_dead_tmp(self, files, suffix=DEFAULT_SUFFIX):
        """Remove this host's temporary files there whose writer (a pid of this host) is dead: a copy killed
        mid-way. Another host's (another label) are never judged here."""
        dead = dead_tmp_names([name for name, info in files.items() if info is not None], suffix)
        if dead:
            self.check_lease()
            self.remove(dead)
            self.removed_tmp.extend(posixpath.join(self.dir, name) for name in dead)
        return dead

    def make_room(self, name, needed, rules=None, suffix=DEFAULT_SUFFIX):
        """Room for ``needed`` bytes there: retention first when there is too little (as the local space check,
        counting the archive about to come), then CopyError naming the free and needed bytes if it still lacks."""
        free = self.free_bytes()
        self.room.update(free_bytes=free, needed_bytes=needed)
        if free is None or free >= needed:
            return free
        rules = rules or {}
        keep_count = rules.get('keep_count') or 0
        if keep_count > 0:
            planned = self.plan_retention(rules, suffix, make_room_for=1)
            self.room['refused'] = planned['refused'] or ''
            self.room['removed'] = self.apply_retention(planned)
            if self.room['removed']:
                free = self.free_bytes()
                self.room['free_bytes'] = free
                if free is None or free >= needed:
                    return free
        if self.room['removed']:
            tried = 'after retention there removed %d files' % len(self.room['removed'])
        elif keep_count > 0:
            tried = 'retention there could remove nothing (%s)' % (
                self.room['refused'] or 'its rules (%s) keep every archive there' % ', '.join(
                    '%s %s' % (k, v) for k, v in sorted(rules.items()) if v and k != 'keep_pinned'))
        else:
            tried = 'retention there is off (alation_backup_keep_count 0)'
        raise CopyError('not enough free space on the backup host for %s in %s: %d bytes (%s) free, %d bytes (%s) '
                        'needed for the archive and its .sha256, %s. Free space there, give it a bigger disk, or '
                        'lower alation_backup_keep_count.'
                        % (name, self.where, free, human(free), needed, human(needed), tried))

    def listing(self):
        return parse_listing(self.remote(self.in_dir(LIST_SCRIPT), 'listing %s' % self.dir))

    def hashes(self, names, step):
        return parse_sha256sum(self.remote(self.in_dir('sha256sum -- %s' % join_argv(names)), step))

    def remove(self, names):
        if names:
            self.remote(self.in_dir('rm -f -- %s' % join_argv(names)), 'removing %s from %s' % (', '.join(names), self.dir))

    # -- the copy ----------------------------------------------------------------------

    def choose_method(self, remote_rsync):
        if self.method == 'stream':
            return 'stream'
        if self.rsync and remote_rsync:
            return 'rsync'
        if self.method == 'rsync':
            raise CopyError('method rsync: rsync is missing %s. Install it there, or use method auto or stream.'
                            % ('on this host' if not self.rsync else 'on the backup host %s' % self.target.host))
        return 'stream'

    def transfer(self, method, local, remote_name):
        dest = posixpath.join(self.dir, remote_name)
        if method == 'rsync':
            host = '[%s]' % self.target.host if ':' in self.target.host else self.target.host
            # --inplace: straight into our temporary name, so a killed rsync leaves no name of its own there.
            argv = [self.rsync, '--protect-args', '--times', '--inplace', '--chmod=F600', '-e', join_argv(self.ssh), '--',
                    local, '%s:%s' % (host, dest)]
            result = self.runner.run(argv, env=self.env)
        else:
            result = self.send(self.runner, self.remote_argv('umask 077 && cat > %s' % shlex.quote(dest)), local,
                               self.env)
        if result['rc'] != 0:
            raise CopyError('sending %s to %s:%s with %s failed (exit %d): %s'
                            % (local, self.target.host, dest, method, result['rc'], last_lines(result['stderr'])))

    def copy(self, src, rules=None, suffix=DEFAULT_SUFFIX):
        """Copy ``src`` and its .sha256; returns {changed, method, dest, bytes}. CopyError when it failed.

        ``rules``: retention there (``_retention.RULES``), run first when the far side lacks room."""
        name, sidecar, digest, actual = local_archive(src)
        sidecar_digest = sha256_of(sidecar)
        final = {name: digest, name + '.sha256': sidecar_digest}
        remote_rsync, files, owner = self.probe()
        check_owner(owner, self.where)
        m = ARCHIVE_RE.match(name)
        self.remove_dead_tmp(files, m.group('suffix') if m else suffix)
        done = dict(changed=False, method='', dest=posixpath.join(self.dir, name), bytes=actual)
        if (files.get(name) or {}).get('size') == actual and files.get(name + '.sha256') is not None:
            if self.hashes(sorted(final), 'checking the copy already on %s' % self.where) == final:
                return done
        self.make_room(name, blocks(actual) + blocks(os.path.getsize(sidecar)), rules, suffix)
        method = self.choose_method(remote_rsync)
        tmps = [tmp_name(name), tmp_name(name + '.sha256')]
        sent = []
        try:
            for local, remote_name in ((src, tmps[0]), (sidecar, tmps[1])):
                sent.append(remote_name)
                self.transfer(method, local, remote_name)
            got = self.hashes(tmps, 'verifying the copy on %s' % self.where)
            for tmp, (final_name, want) in zip(tmps, ((name, digest), (name + '.sha256', sidecar_digest))):
                if got.get(tmp) != want:
                    raise CopyError('the copy of %s on %s hashes to %s, not %s as here: not kept'
                                    % (final_name, self.where, got.get(tmp) or 'nothing', want))
            # The archive first, then its .sha256: an archive without one is never taken for a good one.
            self.check_lease()
            self.remote(self.in_dir('mv -f -- %s %s && mv -f -- %s %s' % (
                shlex.quote(tmps[0]), shlex.quote(name), shlex.quote(tmps[1]), shlex.quote(name + '.sha256'))),
                'renaming the copy into place on %s' % self.where)
        except Exception:
            if sent:
                try:
                    self.remove(sent)
                except CopyError:
                    pass
            raise
        done.update(changed=True, method=method)
        return done

    # -- retention on the far side --------------------------------------------------------

    def verify_remote(self, path, trusted=()):
        """None when the far side's archive ``path`` hashes to what its .sha256 there records, else why not."""
        name = posixpath.basename(path)
        if name in trusted:
            return None
        try:
            out = self.remote(self.in_dir('sha256sum -- %s && echo "== sidecar" && head -c 65536 -- %s' % (
                shlex.quote(name), shlex.quote(name + '.sha256'))), 'verifying %s' % path)
        except CopyError as e:
            return str(e)
        hashed, dummy, text = out.partition('== sidecar\n')
        digest, dummy = sidecar_fields(text, name)
        if digest is None:
            return 'its .sha256 there has no sha256sum line for it'
        actual = parse_sha256sum(hashed).get(name)
        if actual != digest:
            return 'it hashes to %s there, its .sha256 records %s' % (actual, digest)
        return None

    def plan_retention(self, rules, suffix=DEFAULT_SUFFIX, trusted=(), now=None, make_room_for=0):
        # What was just copied (trusted) is never removed there, whatever its name says; future names are left alone.
        return plan_listing(self.dir, self.listing(), rules, suffix, make_room_for, now,
                            lambda path: self.verify_remote(path, trusted), protect=trusted)

    def apply_retention(self, planned):
        """Remove what plan_retention chose (each archive before its .sha256, in one rm); the entries removed."""
        entries = planned['remove'] + planned['orphans']
        if entries:
            self.check_lease()
        self.remove([posixpath.basename(e['path']) for e in entries])
        return entries

    def preview(self, src):
        """What a copy would run (check mode): nothing is."""
        return [join_argv(self.remote_argv('mkdir -p -- %s' % shlex.quote(self.dir))) + NOT_RUN,
                'check that %s/%s names this machine (claim the dir when it has none), remove the temporary files '
                "there of this host's copies that are gone, make room with retention there when df shows too little%s"
                % (self.where, OWNER_MARKER, NOT_RUN),
                'copy %s and its .sha256 to %s under temporary names, verify them there, rename%s'
                % (src, self.where, NOT_RUN)]


def check_target(copier, check_mode=False):
    """state=check, before the run touches anything: the backup host answers over ssh with its host key known
    and the key let in, the per-host dir is there (made when missing) and takes a file (a hidden probe file,
    written and removed), and the method can run. {result: ok or skipped (check mode), dest, method};
    CopyError saying what failed."""
    found = dict(result='ok', dest=copier.where, method='')
    probe = tmp_name('alation-backup-probe')
    script = ('umask 077 && mkdir -p -- %s && cd -- %s && : > %s && rm -f -- %s && '
              '{ if command -v rsync >/dev/null 2>&1; then echo "R yes"; else echo "R no"; fi; }'
              % (shlex.quote(copier.dir), shlex.quote(copier.dir), shlex.quote(probe), shlex.quote(probe)))
    if check_mode:
        copier.runner.executed_commands.append(join_argv(copier.remote_argv(script)) + NOT_RUN)
        found['result'] = 'skipped'
        return found
    out = copier.remote(script, 'writing a probe file in %s' % copier.where)
    found['method'] = copier.choose_method('R yes' in out.splitlines())
    return found


def run_copy(copier, src, rules=None, suffix=DEFAULT_SUFFIX, check_mode=False, clock=time.time):
    """The whole step: the copy (retention there first when it lacks room), then retention on the far side by
    ``rules`` (``_retention.RULES``; keep_count 0 or none: off). Never raises for a copy that failed: the record
    says so. Returns (changed, record, warnings)."""
    rules = rules or {}
    started = clock()
    record = dict(result='ok', dest='%s/%s' % (copier.where, os.path.basename(src)), bytes=0, duration_s=0.0,
                  error='', method='', retention=dict(removed=[], freed_bytes=0, refused='', kept=[]), removed_tmp=[],
                  free_bytes=None, needed_bytes=0)
    warnings = []
    if check_mode:
        copier.runner.executed_commands.extend(copier.preview(src))
        record.update(result='skipped', error='check mode: nothing copied')
        return True, record, warnings
    removed = []

    def settle():
        early = copier.room['removed']
        record.update(removed_tmp=list(copier.removed_tmp), free_bytes=copier.room['free_bytes'],
                      needed_bytes=copier.room['needed_bytes'])
        record['retention'].update(removed=[e['path'] for e in early + removed],
                                   freed_bytes=sum(e['bytes'] for e in early + removed))
        record['duration_s'] = round(clock() - started, 2)
        return bool(copier.removed_tmp or early or removed)

    try:
        done = copier.copy(src, rules, suffix)
        changed = done['changed']
        record.update(bytes=done['bytes'], method=done['method'])
        if 'verified' in done:
            record['verified'] = done['verified']
    except (HostError, OSError) as e:
        record.update(result='failed', error=str(e))
        record['retention']['refused'] = copier.room['refused']
        return settle(), record, warnings
    if (rules.get('keep_count') or 0) > 0:
        try:
            planned = copier.plan_retention(rules, suffix, trusted=(os.path.basename(src),))
            removed = copier.apply_retention(planned)
        except (HostError, OSError) as e:
            record['retention']['refused'] = 'retention on %s failed: %s' % (copier.where, e)
            warnings.append(record['retention']['refused'])
        else:
            record['retention'].update(refused=planned['refused'] or '', kept=planned['kept'])
            if planned['refused']:
                warnings.append('retention on %s: %s' % (copier.where, planned['refused']))
    return settle() or changed, record, warnings


# -- the key and known_hosts, on tmpfs ---------------------------------------------------------

def fs_type(path, mounts='/proc/self/mounts'):
    """The filesystem type ``path`` is on (the last, longest mount point above it), or None."""
    real, best, kind = os.path.realpath(path), '', None
    try:
        with open(mounts) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = re.sub(r'\\([0-7]{3})', lambda m: chr(int(m.group(1), 8)), fields[1])
        if (real == point or real.startswith(point.rstrip('/') + '/')) and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def key_dir_parent(parents=None, kind=None):
    """The first of ``parents`` (KEY_DIR_PARENTS) on tmpfs that we may write, or None."""
    kind = kind or fs_type
    for parent in parents or KEY_DIR_PARENTS:
        if os.path.isdir(parent) and os.access(parent, os.W_OK | os.X_OK) and kind(parent) in MEMORY_FS:
            return parent
    return None


def remove_dead_key_dirs(parents=None, host=None, alive=pid_alive):
    """Remove the key dirs that copies of this host (its label) left when they were killed (their pid is dead):
    only our own dirs (owned by us, not a link). Returns the paths removed."""
    host = host or host_label()
    removed = []
    for parent in parents or KEY_DIR_PARENTS:
        try:
            names = sorted(os.listdir(parent))
        except OSError:
            continue
        for name in names:
            m = KEY_DIR_RE.match(name)
            if not m or m.group('host') != host or alive(int(m.group('pid'))):
                continue
            path = os.path.join(parent, name)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid():
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


class KeyDir(object):
    """The SSH key and known_hosts given as text, as 0600 files in a 0700 dir on tmpfs (``<parent>/
    alation-backup-ssh.<label>.<pid>.<random>``) for one copy; ``close()`` removes it (call it in a ``finally``;
    what a killed copy leaves, ``remove_dead_key_dirs`` removes on the next run)."""

    def __init__(self, identity=None, known_hosts=None, parents=None, kind=None):
        self.path = self.identity_file = self.known_hosts = None
        if not identity and not known_hosts:
            return
        parent = key_dir_parent(parents, kind)
        if parent is None:
            raise CopyError('no memory-backed dir (tmpfs) to hold the SSH key for the copy: none of %s is a tmpfs this '
                            'user may write. Mount a tmpfs on /dev/shm (or /run), or give the key and known_hosts as '
                            'files on the host (identity_file, known_hosts).' % ', '.join(parents or KEY_DIR_PARENTS))
        self.path = tempfile.mkdtemp(prefix='%s.%s.%d.' % (KEY_DIR_PREFIX, host_label(), os.getpid()), dir=parent)
        try:
            if identity:
                self.identity_file = os.path.join(self.path, 'id')
                write_file(self.identity_file, identity.strip() + '\n', mode=0o600, replace=False)
            if known_hosts:
                self.known_hosts = os.path.join(self.path, 'known_hosts')
                write_file(self.known_hosts, known_hosts.rstrip('\n') + '\n', mode=0o600, replace=False)
        except BaseException:
            self.close()
            raise

    def close(self):
        if self.path:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
