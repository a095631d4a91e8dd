# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Secrets handed to a background (async) step without a payload on disk.

An async module's arguments sit in its payload under ``~/.ansible/tmp`` for
the whole step, and after a cancel. So a short task writes the secret into a
0600 file on a tmpfs (``write_secret``), and the async module reads and
removes it as it starts (``take_secret``). The file's name carries this
host's label, its lease's scope (a digest of the lease's path: one backup
storage dir) and the run's key (from its lease token): a later run of the
same lease removes what a run that was cancelled between the two tasks left.
Only one run holds a lease at a time, so another run key of the same scope is
a dead run's; runs of other storage dirs on this host are never touched.
Standard library only.
"""

import hashlib
import os
import re

from ansible_collections.alation.backup.plugins.module_utils._archive_names import host_label
from ansible_collections.alation.backup.plugins.module_utils._host import HostError, write_file

# File systems that keep their files in memory only.
MEMORY_FS = ('tmpfs', 'ramfs')
PREFIX = '.alation_backup.'
SUFFIX = '.secret'


def run_key(token):
    """A run's key in file names: not its lease token (which would hand the lease over), a digest of it."""
    return hashlib.sha256((token or 'no-lease').encode('utf-8')).hexdigest()[:12]


def scope_of(lease_path):
    """The lease's scope in file names: a digest of its path (one backup storage dir's runs)."""
    return hashlib.sha256((lease_path or 'no-lease').encode('utf-8')).hexdigest()[:8]


def secret_name(purpose, key, host=None, scope=None):
    return '%s%s.%s.%s.%s%s' % (PREFIX, host or host_label(), scope or scope_of(None), purpose, key, SUFFIX)


def fs_type(path, mounts='/proc/self/mounts'):
    """The file system type of the mount holding ``path`` (the longest mount point above it), or None."""
    real = os.path.realpath(path)
    best, kind = '', None
    try:
        with open(mounts) as f:
            for line in f:
                fields = line.split()
                if len(fields) < 3:
                    continue
                point = fields[1].replace('\\040', ' ')
                if (real == point or real.startswith(point.rstrip('/') + '/')) and len(point) >= len(best):
                    best, kind = point, fields[2]
    except OSError:
        return None
    return kind


def remove_leftovers(directory, key, host=None, scope=None):
    """This host's secret files of other runs of the same lease (a run cancelled between writing and taking);
    return their names."""
    pattern = re.compile(r'^%s%s\.%s\.[\w-]+\.(?P<key>[0-9a-f]+)%s$' % (
        re.escape(PREFIX), re.escape(host or host_label()), re.escape(scope or scope_of(None)), re.escape(SUFFIX)))
    removed = []
    for name in sorted(os.listdir(directory)):
        m = pattern.match(name)
        if m and m.group('key') != key:
            try:
                os.unlink(os.path.join(directory, name))
                removed.append(name)
            except OSError:
                pass
    return removed


def write_secret(directory, purpose, token, content, mounts='/proc/self/mounts', lease_path=None):
    """Write ``content`` 0600 into ``directory`` (a tmpfs); return (path, names of leftovers removed)."""
    if not os.path.isdir(directory):
        raise HostError('dir %s for the secret file does not exist: give a tmpfs dir such as /dev/shm or /run' % directory)
    kind = fs_type(directory, mounts)
    if kind not in MEMORY_FS:
        raise HostError('dir %s for the secret file is on %s, not in memory (tmpfs): a secret there would outlive '
                        'the run on disk; give a tmpfs dir such as /dev/shm or /run' % (directory, kind or 'an unknown file system'))
    key, scope = run_key(token), scope_of(lease_path)
    removed = remove_leftovers(directory, key, scope=scope)
    path = os.path.join(directory, secret_name(purpose, key, scope=scope))
    write_file(path, content, mode=0o600)
    return path, removed


def take_secret(path):
    """Read the secret file at ``path`` and remove it, whatever happens while reading."""
    try:
        with open(path, 'r') as f:
            return f.read()
    finally:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def secret_file_argument_spec(*options):
    """``<option>_file`` for each secret option: a path (not the secret), written by alation.backup.secret_file."""
    return dict(('%s_file' % o, dict(type='path', no_log=False)) for o in options)


def take_secret_options(module, *options):
    """For each ``<option>_file`` given, read and remove the file into ``<option>`` (masked in all output) as the
    module starts, so the secret is on no file system for the step's length. Fails the module naming the file."""
    for option in options:
        path = module.params.get('%s_file' % option)
        if not path:
            continue
        try:
            value = take_secret(path)
        except OSError as e:
            module.fail_json(msg='%s_file %s cannot be read (%s): the task that writes it (alation.backup.secret_file) '
                                 'must run right before this one, and each file serves one step'
                                 % (option, path, e.strerror or e))
        module.no_log_values.add(value)
        module.params[option] = value
