# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one place where alation.backup modules run external programs.

Every command is an argv list (never a shell string). A command can be run
inside the Alation shell (a chroot) and/or as another OS user; the wrapping is
done here so modules only say *what* to run. Each command run is recorded so
modules can return ``executed_commands``.
"""

from __future__ import annotations

import fcntl
import glob
import os
import pwd
import shlex
import shutil
import subprocess

# Alation's public admin scripts enter the Alation shell this way.
SU = '/bin/su'

# Where PostgreSQL programs are looked for when no bindir is given.
STANDARD_DIRS = ('/usr/local/bin', '/usr/bin', '/bin')
VERSIONED_DIRS = ('/usr/lib/postgresql/*/bin', '/usr/pgsql-*/bin')


def runner_argument_spec():
    """Options shared by modules that run programs on an Alation host."""
    return dict(
        chroot=dict(type='path'),
        run_as=dict(type='str'),
    )


def current_user():
    return pwd.getpwuid(os.geteuid()).pw_name


def wrap_argv(argv, chroot=None, run_as=None, login=False):
    """Return the argv that runs ``argv`` inside ``chroot`` as ``run_as``.

    ``login=True`` goes through ``su -`` so the user's login PATH applies (how
    Alation's own scripts call ``alation_conf``); the command is then joined
    with ``shlex.join`` so each argument stays one word. Otherwise the
    environment is kept (``PGPASSWORD`` must reach pg_probackup) and the user is
    switched with ``chroot --userspec`` or ``runuser``.
    """
    argv = [str(a) for a in argv]
    if run_as in (None, '', current_user()):
        run_as = None
    if chroot in (None, '', '/'):
        chroot = None
    if login and run_as:
        inner = [SU, '-', run_as, '-c', shlex.join(argv)]
        return ['chroot', chroot] + inner if chroot else inner
    if chroot:
        spec = ['--userspec=%s' % run_as] if run_as else []
        return ['chroot'] + spec + [chroot] + argv
    if run_as:
        return ['runuser', '-u', run_as, '--'] + argv
    return argv


class CommandError(Exception):
    """A command exited non-zero. Carries everything a module needs to report it."""

    def __init__(self, result, msg=None):
        self.result = result
        super().__init__(msg or 'command failed with exit code %d: %s' % (result['rc'], result['cmd']))


class Runner:
    """Runs commands for one module invocation and remembers what it ran."""

    def __init__(self, module, chroot=None, run_as=None):
        self.module = module
        self.chroot = chroot
        self.run_as = run_as
        self.executed_commands = []

    def run(self, argv, env=None, login=False, check_rc=False, data=None):
        """Run ``argv``; return a dict with cmd, rc, stdout, stderr.

        ``env`` entries are added to the environment of the command (for
        secrets such as PGPASSWORD: they never appear on the command line).
        With ``check_rc=True`` a non-zero exit raises CommandError.
        """
        full = wrap_argv(argv, self.chroot, self.run_as, login=login)
        cmd = shlex.join(full)
        self.executed_commands.append(cmd)
        rc, out, err = self.module.run_command(full, environ_update=env or {}, data=data,
                                               binary_data=data is not None)
        result = dict(cmd=cmd, rc=rc, stdout=out, stderr=err)
        if check_rc and rc != 0:
            raise CommandError(result)
        return result

    def host_path(self, path):
        """The host path of a path as seen by commands run through this runner."""
        if not self.chroot or self.chroot == '/':
            return path
        return os.path.join(self.chroot, path.lstrip('/'))


def _version_key(path):
    digits = ''.join(c if c.isdigit() else ' ' for c in path).split()
    return [int(d) for d in digits]


def find_program(runner, name, bindir=None, version=None):
    """(path as seen by the program, [dirs searched]) for the PostgreSQL program ``name``.

    ``bindir`` alone is searched when given. Otherwise the standard dirs, then
    the versioned PostgreSQL dirs, newest first; with ``version`` (a major
    version such as ``15``) that version's dirs come first, because a server
    program must match the data directory it runs on. The path is ``None``
    when nothing was found; the dirs are then host paths, for the message.
    """
    if bindir:
        dirs = [bindir]
    else:
        # Map host paths back to program paths (inside the chroot).
        prefix = len(runner.host_path('/')) - 1 if runner.chroot else 0
        versioned = []
        for pattern in VERSIONED_DIRS:
            found = glob.glob(runner.host_path(pattern))
            versioned += [d[prefix:] for d in sorted(found, key=_version_key, reverse=True)]
        dirs = list(STANDARD_DIRS) + versioned
        if version:
            mine = ('/%s/' % version, '-%s/' % version)
            dirs = [d for d in versioned if any(m in d + '/' for m in mine)] + dirs
    for d in dirs:
        candidate = os.path.join(d, name)
        if os.access(runner.host_path(candidate), os.X_OK):
            return candidate, dirs
    if not bindir and not runner.chroot and shutil.which(name):
        return shutil.which(name), dirs
    return None, [runner.host_path(d) for d in dirs]


# Linux's F_SETPIPE_SZ (fcntl has the name from Python 3.10).
F_SETPIPE_SZ = getattr(fcntl, 'F_SETPIPE_SZ', 1031)


def open_pipe(argv, stderr, pipe_size=None):
    """Start ``argv`` with pipes on stdin and stdout, for programs that stream
    (a compressor in the archive step): ``run_command`` cannot stream.

    ``pipe_size`` widens both pipes (1 MiB instead of 64 KiB made the igzip
    path 2.4x faster: far fewer wake-ups); where the system caps pipe sizes
    lower, the default stays.
    """
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                            bufsize=0, close_fds=True)
    if pipe_size:
        for f in (proc.stdin, proc.stdout):
            try:
                fcntl.fcntl(f.fileno(), F_SETPIPE_SZ, pipe_size)
            except OSError:
                pass
    return proc
