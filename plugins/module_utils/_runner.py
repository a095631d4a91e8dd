# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one place where alation.backup modules run external programs.

Every command is an argv list (never a shell string). A command can be run
inside the Alation shell (a chroot) and/or as another OS user; the wrapping is
done here so modules only say *what* to run. Each command run is recorded so
modules can return ``executed_commands``.

Every command runs with ``LC_ALL=C`` and without ``LANGUAGE``: the modules
read the programs' stderr (pg_probackup's ERROR lines, "No such file or
directory"), and a host set to another language would translate it.

``find_program`` is the one way a program is found, on the host or inside
the Alation shell.
"""

import fcntl
import glob
import os
import shlex
import subprocess

from ansible_collections.alation.backup.plugins.module_utils._users import Accounts

# Alation's public admin scripts enter the Alation shell this way.
SU = '/bin/su'

# The standard PATH of a Debian or RHEL system: searched inside a chroot, whose
# PATH we cannot ask for, and after the host's own PATH.
STANDARD_DIRS = ('/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin')
# Where distributions put each PostgreSQL major version's programs.
VERSIONED_DIRS = ('/usr/lib/postgresql/*/bin', '/usr/pgsql-*/bin')
# The names distributions give versioned builds of a program, newest first.
VERSIONED_NAMES = {
    'pg_probackup': tuple('pg_probackup-%d' % v for v in range(18, 10, -1)),
}
# How check mode marks a command it did not run.
NOT_RUN = '  (check mode: not run)'
# The environment every command gets: English messages, whatever the host's locale.
C_LOCALE = {'LC_ALL': 'C'}
# coreutils' timeout: its exit codes when it stopped the command (TERM, then KILL), and the grace before KILL.
TIMEOUT_RCS = (124, 137)
TIMEOUT_GRACE_S = 5


def shell_argument_spec():
    """The ``chroot`` option of the modules that work in the Alation shell ('', None or '/': a plain host)."""
    return dict(chroot=dict(type='path'))


def runner_argument_spec():
    """Options shared by modules that run programs on an Alation host: the shell, and the OS user."""
    return dict(shell_argument_spec(), run_as=dict(type='str'))


def join_argv(argv):
    # shlex.join is Python 3.8+.
    return ' '.join(shlex.quote(a) for a in argv)


def current_user():
    return Accounts().user_name(os.geteuid())


def wrap_argv(argv, chroot=None, run_as=None, login=False):
    """Return the argv that runs ``argv`` inside ``chroot`` as ``run_as``.

    ``login=True`` goes through ``su -`` so the user's login PATH applies (how
    Alation's own scripts call ``alation_conf``); the command is then quoted
    so each argument stays one word, and ``env LC_ALL=C`` goes before it
    because ``su -`` starts from a clean environment. Otherwise the
    environment is kept (``PGPASSWORD`` must reach pg_probackup) and the user is
    switched with ``chroot --userspec`` or ``runuser``.
    """
    argv = [str(a) for a in argv]
    if run_as in (None, '', current_user()):
        run_as = None
    if chroot in (None, '', '/'):
        chroot = None
    if login and run_as:
        inner = [SU, '-', run_as, '-c', join_argv(['env', 'LC_ALL=C'] + argv)]
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
        # LC_ALL=C wins over every other locale variable but LANGUAGE, which
        # GNU gettext reads first: it goes for this module's whole process.
        os.environ.pop('LANGUAGE', None)
        self.module = module
        self.chroot = chroot
        self.run_as = run_as
        self.executed_commands = []

    def run(self, argv, env=None, login=False, check_rc=False, data=None, timeout=None):
        """Run ``argv``; return a dict with cmd, rc, stdout, stderr and timed_out.

        ``env`` entries are added to the environment of the command (for
        secrets such as PGPASSWORD: they never appear on the command line).
        With ``check_rc=True`` a non-zero exit raises CommandError.
        ``timeout`` (seconds) stops the command through coreutils' ``timeout``
        (TERM, then KILL 5 s later) when it has not ended by then; the
        result's ``timed_out`` says so (``run_command`` has no timeout).
        """
        full = wrap_argv(argv, self.chroot, self.run_as, login=login)
        cmd = join_argv(full)
        self.executed_commands.append(cmd)
        stopper = find_program(None, 'timeout')[0] if timeout else None
        if stopper:
            full = [stopper, '--kill-after=%d' % TIMEOUT_GRACE_S, '%g' % timeout] + full
        environ = dict(C_LOCALE)
        environ.update(env or {})
        rc, out, err = self.module.run_command(full, environ_update=environ, data=data,
                                               binary_data=data is not None)
        timed_out = bool(stopper) and rc in TIMEOUT_RCS
        result = dict(cmd=cmd, rc=rc, stdout=out, stderr=err, timed_out=timed_out)
        if check_rc and rc != 0:
            raise CommandError(result)
        return result

    def preview(self, argv):
        """The command line ``run`` would run for ``argv``, marked as not run: what check mode reports."""
        return join_argv(wrap_argv(argv, self.chroot, self.run_as)) + NOT_RUN

    def host_path(self, path):
        """The host path of a path as seen by commands run through this runner."""
        if not self.chroot or self.chroot == '/':
            return path
        return os.path.join(self.chroot, path.lstrip('/'))


def _version_key(path):
    digits = ''.join(c if c.isdigit() else ' ' for c in path).split()
    return [int(d) for d in digits]


def _host_path(runner, path):
    return runner.host_path(path) if runner is not None else path


def _executable(path):
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _candidates(names, version=None):
    names = [names] if isinstance(names, str) else list(names)
    candidates = []
    for name in names:
        variants = list(VERSIONED_NAMES.get(name, ()))
        if version:
            variants.sort(key=lambda n: not n.endswith('-%s' % version))
        candidates += [name] + variants
    return candidates


def find_program(runner, names, bindir=None, version=None):
    """(path as the program sees it, [dirs searched]) for the first of ``names`` found.

    ``names`` is one name or several, in order of preference; a name with a
    ``/`` is a path, checked as it is. Each name also stands for its
    distributions' versioned names (``pg_probackup-15``; ``version``'s first).
    ``runner`` None, or one without a chroot, looks on this host: PATH first;
    a runner with a chroot looks inside the Alation shell.

    ``bindir`` alone is searched when given. Otherwise, with ``version`` (a
    PostgreSQL major version such as ``15``), that version's dirs come first,
    because a server program must match the data directory it runs on; then
    PATH (on the host), the standard dirs, and the other PostgreSQL dirs,
    newest first. The path is ``None`` when nothing was found; the dirs are
    then host paths, for the message.
    """
    candidates = _candidates(names, version)
    for name in candidates:
        if '/' in name:
            if _executable(_host_path(runner, name)):
                return name, [os.path.dirname(name)]
    inside = runner is not None and bool(runner.chroot) and runner.chroot != '/'
    if bindir:
        dirs = [bindir]
    else:
        # Found as host paths, handed on as paths inside the chroot.
        prefix = len(runner.host_path('/')) - 1 if inside else 0
        versioned = []
        for pattern in VERSIONED_DIRS:
            found = glob.glob(_host_path(runner, pattern))
            versioned += [d[prefix:] for d in sorted(found, key=_version_key, reverse=True)]
        path_dirs = [] if inside else [d for d in os.environ.get('PATH', '').split(os.pathsep) if d]
        mine = [d for d in versioned if version and ('/%s/' % version in d + '/' or '-%s/' % version in d + '/')]
        dirs = []
        for d in mine + path_dirs + list(STANDARD_DIRS) + versioned:
            if d not in dirs:
                dirs.append(d)
    for name in candidates:
        if '/' in name:
            continue
        for d in dirs:
            candidate = os.path.join(d, name)
            if _executable(_host_path(runner, candidate)):
                return candidate, dirs
    return None, [_host_path(runner, d) for d in dirs]


def not_found(runner, names, searched, hint):
    """The message for a program that find_program did not find: what, where it looked, what to do."""
    candidates = _candidates(names)
    paths = [n for n in candidates if '/' in n]
    if paths:
        host = [_host_path(runner, n) for n in paths]
        return '%s is not an executable file%s. %s' % (
            ', '.join(paths), '' if host == paths else ' (looked at %s on the host)' % ', '.join(host), hint)
    inside = runner is not None and runner.chroot not in (None, '', '/')
    if inside:
        root = runner.host_path('/').rstrip('/')
        searched = [d[len(root):] if d.startswith(root + '/') else d for d in searched]
    return '%s not found: looked for %s in %s%s. %s' % (
        candidates[0], ', '.join(candidates), ':'.join(searched) or 'nothing',
        ' inside the Alation shell %s' % runner.chroot if inside else '', hint)


# Linux's F_SETPIPE_SZ (fcntl has the name from Python 3.10).
F_SETPIPE_SZ = getattr(fcntl, 'F_SETPIPE_SZ', 1031)


def program_env(extra=None):
    """The environment of a program started with ``start``: this process's, in the C locale (``LC_ALL=C``, no
    ``LANGUAGE``), plus ``extra`` (secrets such as ``SSH_AUTH_SOCK``: never on the command line)."""
    env = dict(os.environ)
    env.pop('LANGUAGE', None)
    env.update(C_LOCALE)
    env.update(extra or {})
    return env


def start(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=None, chroot=None,
          run_as=None, pipe_size=None, **popen):
    """Start ``argv`` and return its ``subprocess.Popen``, for what ``run_command`` cannot do: stream through
    pipes, pass an fd, feed a file or another program's output.

    Pipes on stdin, stdout and stderr unless other files are given; the environment of ``program_env(env)``;
    inside ``chroot`` as ``run_as`` as ``Runner.run`` wraps them; ``pipe_size`` widens the pipes (1 MiB instead
    of 64 KiB made the igzip path 2.4x faster: far fewer wake-ups; where the system caps pipe sizes lower, the
    default stays). ``popen``: more ``Popen`` arguments (``pass_fds``, ``bufsize``).
    """
    proc = subprocess.Popen(wrap_argv(argv, chroot, run_as), stdin=stdin, stdout=stdout, stderr=stderr,
                            close_fds=True, env=program_env(env), **popen)
    if pipe_size:
        for f in (proc.stdin, proc.stdout):
            if f is None:
                continue
            try:
                fcntl.fcntl(f.fileno(), F_SETPIPE_SZ, pipe_size)
            except OSError:
                pass
    return proc


def open_pipe(argv, stderr, pipe_size=None):
    """Start ``argv`` with pipes on stdin and stdout, unbuffered, for programs that stream (a compressor in the
    archive step)."""
    return start(argv, stderr=stderr, pipe_size=pipe_size, bufsize=0)
