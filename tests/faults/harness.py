# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the fault suite (tests/faults/suite.py) needs around a real Alation shell.

- ``Run``: the backup (or drill) playbook started with its output streamed
  line by line, so a fault can be keyed to the task the run is in;
- ``process_tree`` / ``freeze`` / ``kill_tree``: every process of a run,
  found by walking /proc from the controller (ansible-core's workers start
  sessions of their own, so the controller's process group misses the
  module and its children) and by a marker in the environment (a process
  whose parent died is re-parented and leaves the tree);
- ``storage_problems`` / ``archive_hashes``: what the storage dir must never
  hold (a file under a final archive name that fails ``gzip -t``, its tar
  listing or its ``.sha256``), and the earlier archives' bytes;
- ``tmpfs``: a small file system mounted inside the shell, always unmounted;
- ``age_archives``: archive names have minute resolution and a run that
  follows another within the same minute waits for the next one; the suite
  renames earlier archives to earlier minutes (sidecar rewritten) so its
  runs do not wait.
"""

import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SUPPORT = os.path.join(REPO, 'tests', 'support')
if SUPPORT not in sys.path:
    sys.path.insert(0, SUPPORT)

import playbook  # noqa: E402  pylint: disable=wrong-import-position

ARCHIVE_RE = re.compile(r'^(?P<ts>\d{12})_(?P<tag>\d+-\d+-\d+-\d+)_alation_backup\.tar\.gz$')
SIDECAR_RE = re.compile(r'^(?P<hex>[0-9a-f]{64})  (?P<name>\S+)\n(?:# size (?P<size>\d+)\n)?$')
LEASE = '.alation_backup.lock'
STORAGE = '/data2/backup'
STAGING = '/data2/tmp'
PG_STAGING = '/data2/backup/pgbackup'
MARKER = 'ALATION_FAULTS_RUN'
# A task banner of the default callback: "TASK [alation.backup.backup : Archive | Pack ...] ***".
TASK_RE = re.compile(r'^TASK \[(?:[\w.]+ : )?(?P<name>[^\]]*)\]')


def heartbeat_landed():
    """Whether the lease with a heartbeat (alation_backup_lock_stale_after) is in: a commit saying so in the
    history, or (a copy of the tree without its history) role defaults without the old lock_max_age."""
    out = subprocess.run(['git', '-C', REPO, 'log', '--format=%s'], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, universal_newlines=True, check=False).stdout
    if 'heartbeat' in out.lower():
        return True
    try:
        with open(os.path.join(REPO, 'roles', 'backup', 'defaults', 'main.yml')) as f:
            return 'alation_backup_lock_max_age' not in f.read()
    except OSError:
        return False


def lease_vars(stale_after):
    """The lease's role vars; the old name too while the heartbeat lease has not landed."""
    out = dict(alation_backup_lock_stale_after=stale_after)
    if not heartbeat_landed():
        out['alation_backup_lock_max_age'] = stale_after
    return out


# -- runs, streamed --------------------------------------------------------------------

class Run(object):
    """A playbook run whose output is read as it comes: ``lines`` holds (monotonic time, line)."""

    def __init__(self, name, extra_vars, book='backup.yml', verbosity=0, env=None):
        self.name = name
        self.workdir = tempfile.mkdtemp(prefix='faults-%s-' % re.sub(r'\W', '-', name))
        # The playbook helper of the other suites; its argv and env, streamed here.
        argv, base_env, self.report_path = playbook._argv_env(  # pylint: disable=protected-access
            book, extra_vars, workdir=self.workdir)
        if verbosity:
            argv.append('-' + 'v' * verbosity)
        self.marker = '%s-%d-%s' % (name, os.getpid(), os.path.basename(self.workdir))
        full_env = dict(base_env, PYTHONUNBUFFERED='1', **{MARKER: self.marker})
        full_env.update(env or {})
        self.started = time.monotonic()
        self.lines = []
        self.cond = threading.Condition()
        self.proc = subprocess.Popen(argv, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     universal_newlines=True, bufsize=1)
        self.pid = self.proc.pid
        self.rc = None
        self.reader = threading.Thread(target=self._read, name='read-%s' % name)
        self.reader.daemon = True
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append((time.monotonic(), line.rstrip('\n')))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    @property
    def output(self):
        with self.cond:
            return '\n'.join(line for dummy, line in self.lines)

    def tasks(self):
        """The task names the run has started, in order."""
        with self.cond:
            return [m.group('name') for dummy, line in self.lines for m in [TASK_RE.match(line)] if m]

    def current_task(self):
        names = self.tasks()
        return names[-1] if names else ''

    def wait_for(self, regex, timeout=300):
        """Wait until a line matching ``regex`` appears; True, or False when the run ended or time ran out."""
        pattern = re.compile(regex)
        deadline = time.monotonic() + timeout
        seen = 0
        with self.cond:
            while True:
                for dummy, line in self.lines[seen:]:
                    if pattern.search(line):
                        return True
                seen = len(self.lines)
                if self.proc.poll() is not None and not self.reader.is_alive():
                    return False
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.5))

    def wait_for_task(self, regex, timeout=300):
        return self.wait_for(r'^TASK \[(?:[\w.]+ : )?[^\]]*(?:%s)' % regex, timeout)

    def wait(self, timeout=900):
        try:
            self.rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_tree(self)
            self.rc = self.proc.wait()
            with self.cond:
                self.lines.append((time.monotonic(), '(faults: stopped after %d s)' % timeout))
        self.reader.join(10)
        return self

    @property
    def duration(self):
        return time.monotonic() - self.started

    @property
    def records(self):
        """{host: record} of the run's report, or {} when it wrote none."""
        try:
            with open(self.report_path) as f:
                return {r['host']: r for r in json.load(f)}
        except (OSError, ValueError):
            return {}

    @property
    def record(self):
        return self.records.get(playbook.HOST, {})

    def ok(self):
        return self.rc == 0 and self.record.get('result') == 'ok'

    def error(self):
        """The run's error in one line: the record's, else the last fatal line."""
        err = self.record.get('error')
        if err:
            return ' '.join(str(err).split())
        fatal = [line for dummy, line in self.lines if line.startswith(('fatal:', '[ERROR]'))]
        return ' '.join(fatal[-1].split())[:600] if fatal else 'rc %s, no error recorded' % self.rc

    def tail(self, n=40):
        with self.cond:
            return '\n'.join(line for dummy, line in self.lines[-n:])


# -- processes -------------------------------------------------------------------------

def _children_map():
    children = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % entry) as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(')') + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def _marked(marker):
    found = set()
    needle = ('%s=%s' % (MARKER, marker)).encode()
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/environ' % entry, 'rb') as f:
                if needle in f.read().split(b'\0'):
                    found.add(int(entry))
        except OSError:
            continue
    return found


def process_tree(run):
    """Every live process of ``run``: the controller, its descendants, and whatever carries its marker."""
    children = _children_map()
    found = set()
    todo = [run.pid]
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        found.add(pid)
        todo.extend(children.get(pid, ()))
    found |= _marked(run.marker)
    found.discard(os.getpid())
    return {pid for pid in found if os.path.exists('/proc/%d' % pid)}


def cmdlines(pids):
    out = {}
    for pid in pids:
        try:
            with open('/proc/%d/cmdline' % pid, 'rb') as f:
                out[pid] = f.read().replace(b'\0', b' ').decode('utf-8', 'replace').strip()
        except OSError:
            pass
    return out


def _signal_all(pids, sig):
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def freeze(run):
    """SIGSTOP the whole tree, again until no new process appears; return the stopped pids."""
    stopped = set()
    for dummy in range(50):
        new = process_tree(run) - stopped
        if not new:
            break
        _signal_all(new, signal.SIGSTOP)
        stopped |= new
    return stopped


def thaw(pids):
    _signal_all(pids, signal.SIGCONT)


def kill_tree(run):
    """kill -9 the whole tree of ``run`` at once (all stopped first, so none acts on another's death);
    return {pid: command line} of what was killed."""
    stopped = freeze(run)
    killed = cmdlines(stopped)
    _signal_all(stopped, signal.SIGKILL)
    try:
        run.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(os.path.exists('/proc/%d/cmdline' % p) and _alive(p)
                                              for p in stopped):
        time.sleep(0.1)
    return killed


def _alive(pid):
    try:
        with open('/proc/%d/stat' % pid) as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(')') + 2] != 'Z'


def module_running(run, name):
    """Whether a module ``name`` (AnsiballZ_<name>.py) runs in the tree of ``run``."""
    return any('AnsiballZ_%s.py' % name in c for c in cmdlines(process_tree(run)).values())


# -- the storage dir -------------------------------------------------------------------

def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def archive_hashes(storage):
    """{name: sha256} of every file under a final name (archives and their .sha256)."""
    out = {}
    for name in sorted(os.listdir(storage)):
        if ARCHIVE_RE.match(name) or (name.endswith('.sha256') and ARCHIVE_RE.match(name[:-7])):
            out[name] = sha256_file(os.path.join(storage, name))
    return out


def check_archive(path, need_sidecar=True):
    """'' when ``path`` passes gzip -t, its tar listing and its .sha256; else what fails."""
    name = os.path.basename(path)
    if subprocess.run(['gzip', '-t', path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                      check=False).returncode != 0:
        return '%s fails gzip -t' % name
    if subprocess.run(['tar', '-tzf', path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                      check=False).returncode != 0:
        return '%s fails its tar listing' % name
    sidecar = path + '.sha256'
    if not os.path.exists(sidecar):
        return '%s has no .sha256' % name if need_sidecar else ''
    with open(sidecar) as f:
        text = f.read()
    m = SIDECAR_RE.match(text)
    if not m or m.group('name') != name:
        return '%s.sha256 is malformed: %r' % (name, text[:200])
    if m.group('hex') != sha256_file(path):
        return '%s does not match its .sha256' % name
    if m.group('size') and int(m.group('size')) != os.path.getsize(path):
        return '%s is %d bytes, its .sha256 says %s' % (name, os.path.getsize(path), m.group('size'))
    return ''


def storage_problems(storage, unsealed_ok=False):
    """What is wrong under final names in ``storage``: a bad archive, a lone .sha256.

    ``unsealed_ok``: an archive without its .sha256 is allowed (a kill between
    the two renames of the publish; the next run completes it).
    """
    problems = []
    names = set(os.listdir(storage))
    for name in sorted(names):
        path = os.path.join(storage, name)
        if ARCHIVE_RE.match(name):
            problem = check_archive(path, need_sidecar=not unsealed_ok)
            if problem:
                problems.append(problem)
        elif name.endswith('.sha256') and ARCHIVE_RE.match(name[:-7]) and name[:-7] not in names:
            problems.append('lone %s (no archive)' % name)
    return problems


TMP_RE = re.compile(r'^\..*\.tmp$')


def temp_files(storage):
    """Hidden temporary files in ``storage`` (an archive's or a lease's), which a finished run must not leave."""
    return sorted(n for n in os.listdir(storage) if TMP_RE.match(n))


def archives(storage):
    return sorted(n for n in os.listdir(storage) if ARCHIVE_RE.match(n))


def age_archives(storage, minutes_back=60 * 24):
    """Rename the archives of the last ``minutes_back`` minutes to free minutes before that (sidecar rewritten).

    Runs that follow each other within a minute would otherwise wait for the
    next minute (the archive's name has minute resolution).
    """
    cutoff = time.strftime('%Y%m%d%H%M', time.gmtime(time.time() - minutes_back * 60))
    taken = set(archives(storage))
    t = time.time() - (minutes_back + 1) * 60
    for name in archives(storage):
        m = ARCHIVE_RE.match(name)
        if m.group('ts') <= cutoff:
            continue
        while True:
            new = '%s_%s_alation_backup.tar.gz' % (time.strftime('%Y%m%d%H%M', time.gmtime(t)), m.group('tag'))
            t -= 60
            if new not in taken:
                break
        taken.add(new)
        src, dst = os.path.join(storage, name), os.path.join(storage, new)
        os.rename(src, dst)
        if os.path.exists(src + '.sha256'):
            with open(src + '.sha256') as f:
                text = f.read()
            st = os.stat(src + '.sha256')
            with open(dst + '.sha256', 'w') as f:
                f.write(text.replace(name, new))
            os.chown(dst + '.sha256', st.st_uid, st.st_gid)
            os.chmod(dst + '.sha256', st.st_mode & 0o7777)
            os.unlink(src + '.sha256')


def prune_archives(storage, keep=2):
    """Remove all but the newest ``keep`` archives (the suite's disk, as an admin's retention would)."""
    names = archives(storage)
    for name in names[:-keep] if keep else names:
        for suffix in ('', '.sha256'):
            if os.path.exists(os.path.join(storage, name + suffix)):
                os.unlink(os.path.join(storage, name + suffix))


def dir_entries(path):
    try:
        return sorted(os.listdir(path))
    except OSError as e:
        return ['<%s>' % e.strerror]


# -- mounts ----------------------------------------------------------------------------

def _mounted(path):
    with open('/proc/self/mountinfo') as f:
        return any(line.split(' ')[4] == path for line in f)


@contextlib.contextmanager
def tmpfs(path, size, uid=0, gid=0, mode=0o755):
    """A tmpfs of ``size`` (e.g. '8m') at ``path``, whatever was there hidden under it; unmounted afterwards."""
    os.makedirs(path, exist_ok=True)
    subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=%s,mode=%o,uid=%d,gid=%d' % (size, mode, uid, gid),
                    'faults-tmpfs', path], check=True)
    try:
        yield path
    finally:
        for dummy in range(20):
            if not _mounted(path):
                break
            if subprocess.run(['umount', path], stderr=subprocess.DEVNULL, check=False).returncode == 0:
                break
            time.sleep(0.5)
        else:
            subprocess.run(['umount', '-l', path], check=False)


def remount_size(path, size):
    subprocess.run(['mount', '-o', 'remount,size=%s' % size, path], check=True)


def unmount_below(root):
    """Unmount whatever is still mounted below ``root`` (deepest first)."""
    root = os.path.abspath(root).rstrip('/') + '/'
    with open('/proc/self/mountinfo') as f:
        points = [line.split(' ')[4] for line in f]
    for point in sorted((p for p in points if p.startswith(root)), key=len, reverse=True):
        subprocess.run(['umount', '-l', point], check=False)


def fill(path, chunk=1 << 20):
    """Write zeros into ``path`` until the file system is full; return the bytes written."""
    written = 0
    block = b'\0' * chunk
    try:
        with open(path, 'wb') as f:
            while True:
                written += f.write(block)
                f.flush()
    except OSError:
        pass
    return written


class LeaseWatcher(object):
    """Reads the lease every 50 ms while a run works: the longest a live run left it unrenewed.

    A live run must renew its lease well within stale_after, or a run started
    then would take it over while the first still works.
    """

    def __init__(self, storage, interval=0.05):
        self.path = os.path.join(storage, LEASE)
        self.interval = interval
        self.max_silence = 0.0
        self.during = ''
        self.holders = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name='lease-watcher')
        self._thread.daemon = True
        self.task_of = None

    def _watch(self):
        while not self._stop.is_set():
            try:
                with open(self.path) as f:
                    holder = json.loads(f.read())
            except (OSError, ValueError):
                holder = None
            if isinstance(holder, dict):
                self.holders.add(holder.get('run_id'))
                silence = time.time() - float(holder.get('renewed', holder.get('started', 0)))
                if silence > self.max_silence:
                    self.max_silence = silence
                    self.during = self.task_of() if self.task_of else ''
            self._stop.wait(self.interval)

    def start(self, task_of=None):
        self.task_of = task_of
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join()
        return self
