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


def _environ(pid):
    """The environment of process ``pid`` as b'NAME=value' items ([] once it is gone or not ours to read)."""
    try:
        with open('/proc/%s/environ' % pid, 'rb') as f:
            return f.read().split(b'\0')
    except OSError:
        return []


def _marked(marker):
    needle = ('%s=%s' % (MARKER, marker)).encode()
    return {int(entry) for entry in os.listdir('/proc') if entry.isdigit() and needle in _environ(entry)}


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
    return _kill_stopped(run, freeze(run))


def _kill_stopped(run, stopped):
    """SIGKILL the stopped pids of ``run`` and wait (30 s at most) for the controller and each of them to go;
    return {pid: command line} of what was killed."""
    killed = cmdlines(stopped)
    _signal_all(stopped, signal.SIGKILL)
    try:
        run.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_alive(p) for p in stopped):
        time.sleep(0.1)
    return killed


def _alive(pid):
    try:
        with open('/proc/%d/stat' % pid) as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(')') + 2] != 'Z'


PIPELINED_RE = re.compile(r'^\S*/python[0-9.]*$')


def _started_at(pid):
    """The epoch time process ``pid`` started at (/proc/<pid>/stat's starttime, after boot)."""
    with open('/proc/%d/stat' % pid) as f:
        start_ticks = int(f.read().rsplit(')', 1)[1].split()[19])
    with open('/proc/stat') as f:
        boot = next(int(line.split()[1]) for line in f if line.startswith('btime '))
    return boot + start_ticks / os.sysconf('SC_CLK_TCK')


def _tmpdir(pid):
    """Where process ``pid``'s tempfile makes its dirs: $TMPDIR, else /tmp."""
    return next((item[7:].decode() for item in _environ(pid) if item.startswith(b'TMPDIR=') and item[7:]), '/tmp')


def module_running(run, name):
    """Whether module ``name`` runs in the tree of ``run``.

    An async module (or one sent without pipelining) is a file, AnsiballZ_<name>.py, on its command line. A
    pipelined one is an interpreter alone reading the module from its stdin: it is ``name`` when it made its
    payload dir, ansible_<collection.>name_payload_*, in its temp dir (a killed module leaves that dir
    behind: only one made since the interpreter started counts).
    """
    cmds = cmdlines(process_tree(run))
    if any('AnsiballZ_%s.py' % name in c for c in cmds.values()):
        return True
    payload = re.compile(r'^ansible_(?:[\w]+\.[\w]+\.)?%s_payload_' % re.escape(name))
    for pid, cmd in cmds.items():
        if not PIPELINED_RE.match(cmd):
            continue
        try:
            started = _started_at(pid)
            tmp = _tmpdir(pid)
            for entry in os.listdir(tmp):
                if payload.match(entry) and os.lstat(os.path.join(tmp, entry)).st_ctime >= started - 1:
                    return True
        except (OSError, ValueError, IndexError, StopIteration):
            continue
    return False


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


# -- the world around a run (issue 18) -------------------------------------------------

FAKETIME_LIB = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1'
# The owner markers of the features of issue 18: the storage dir's (JSON, as the lease) and the far side's per-host
# dir's (text lines).
OWNER_MARKER = '.alation_backup_owner'
FAR_OWNER_MARKER = '.alation-backup-owner'


# libfaketime 0.9.10 (Debian 12) with FAKETIME_DONT_FAKE_MONOTONIC fails clock_nanosleep(CLOCK_MONOTONIC,
# TIMER_ABSTIME), which Python 3.11's time.sleep uses, with EINVAL (ansible-playbook's strategy loop then stops with
# "Invalid argument"). This sitecustomize, on the PYTHONPATH of the run, gives every Python of it (the controller, its
# workers, the modules) a time.sleep that waits in select() by the monotonic clock instead; nothing else changes.
_SLEEP_FIX = """# Written by tests/faults/harness.py: time.sleep without clock_nanosleep (libfaketime 0.9.10 breaks it).
import select
import time


def _sleep(seconds):
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        select.select([], [], [], left)


time.sleep = _sleep
"""


def faketime_env(offset):
    """The environment that shifts the wall clock of a run by ``offset`` ('-1d', '+1d'), and of every module it
    starts on a local connection (they inherit it); the monotonic clocks (and CLOCK_BOOTTIME) are left alone."""
    if not os.path.exists(FAKETIME_LIB):
        raise RuntimeError('%s is missing: apt-get install faketime (make deps installs it)' % FAKETIME_LIB)
    site = os.path.join(tempfile.gettempdir(), 'faults-faketime-site')
    os.makedirs(site, exist_ok=True)
    with open(os.path.join(site, 'sitecustomize.py'), 'w') as f:
        f.write(_SLEEP_FIX)
    os.chmod(site, 0o755)
    path = os.pathsep.join(p for p in (site, os.environ.get('PYTHONPATH', '')) if p)
    return dict(LD_PRELOAD=FAKETIME_LIB, FAKETIME=offset, FAKETIME_DONT_FAKE_MONOTONIC='1', PYTHONPATH=path)


def faketime_probe(env):
    """How far (seconds) the wall clock of a module's Python is shifted under ``env``: the setup module's
    ansible_date_time.epoch on a local connection, minus the real clock. Raises when it cannot be read."""
    ansible = os.path.join(os.path.dirname(sys.executable), 'ansible')
    full = dict(os.environ, ANSIBLE_NOCOLOR='1', ANSIBLE_LOCALHOST_WARNING='0', ANSIBLE_INVENTORY_UNPARSED_WARNING='0',
                **env)
    before = time.time()
    out = subprocess.run([ansible, 'localhost', '-c', 'local', '-i', 'localhost,', '-e',
                          'ansible_python_interpreter=%s' % sys.executable, '-m', 'ansible.builtin.setup',
                          '-a', 'gather_subset=!all filter=ansible_date_time'], env=full, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True, check=False).stdout
    after = time.time()
    m = re.search(r'"epoch": "(\d+)"', out)
    if not m:
        raise RuntimeError('the faketime probe read no ansible_date_time.epoch: %s' % ' '.join(out.split())[:600])
    return int(m.group(1)) - (before + after) / 2


def plant_archive(src, dest_dir, stamp):
    """A byte copy of the archive ``src`` in ``dest_dir`` named for ``stamp`` (YYYYMMDDHHMM), its .sha256
    rewritten for the new name; owner and mode as the source's. Return the new name."""
    m = ARCHIVE_RE.match(os.path.basename(src))
    name = '%s_%s_alation_backup.tar.gz' % (stamp, m.group('tag'))
    dst = os.path.join(dest_dir, name)
    with open(src + '.sha256') as f:
        text = f.read().replace(os.path.basename(src), name)
    for path, data in ((dst, None), (dst + '.sha256', text)):
        source = src if data is None else src + '.sha256'
        st = os.stat(source)
        if data is None:
            subprocess.run(['cp', source, path], check=True)
        else:
            with open(path, 'w') as f:
                f.write(data)
        os.chown(path, st.st_uid, st.st_gid)
        os.chmod(path, st.st_mode & 0o7777)
    return name


def remove_archive(directory, name):
    for suffix in ('', '.sha256'):
        if os.path.lexists(os.path.join(directory, name + suffix)):
            os.unlink(os.path.join(directory, name + suffix))


def other_machine_id():
    """A machine id that is not this machine's (32 hex digits, as /etc/machine-id)."""
    import uuid  # pylint: disable=import-outside-toplevel
    return uuid.uuid4().hex


def dead_pid():
    """A pid no process has here (another machine's pid must not pass for a live local one)."""
    pid = 3999999
    while os.path.exists('/proc/%d' % pid):
        pid -= 1
    return pid


def write_owner_marker(directory, hostname, machine_id=None):
    """The storage dir's owner marker as another machine would have written it; return its path."""
    path = os.path.join(directory, OWNER_MARKER)
    with open(path, 'w') as f:
        json.dump(dict(machine_id=machine_id or other_machine_id(), hostname=hostname, since=time.time() - 86400), f)
    os.chmod(path, 0o644)
    return path


def write_far_owner_marker(directory, hostname, uid=-1, gid=-1, machine_id=None):
    """A far-side per-host dir's owner marker naming another machine; return its path."""
    path = os.path.join(directory, FAR_OWNER_MARKER)
    with open(path, 'w') as f:
        f.write('# alation.backup: the machine that owns this per-host dir; a copy from another machine is refused\n'
                'machine_id %s\nhost %s\n' % (machine_id or other_machine_id(), hostname))
    os.chown(path, uid, gid)
    return path


class ForeignLease(object):
    """The host lock of a live run on another machine (a storage dir shared over NFS), renewed by a thread.

    Written as that machine's copy of the collection writes it: the lease's
    JSON with its own run id, pid, boot id and boot clock, and the machine
    (``machine_id``, ``hostname``); renewed every ``interval`` seconds under
    the same directory lock, by a rename of a file written beside the dir.
    """

    def __init__(self, storage, hostname, stale_after, interval=2.0):
        import secrets  # pylint: disable=import-outside-toplevel
        import uuid  # pylint: disable=import-outside-toplevel
        self.storage = storage
        self.path = os.path.join(storage, LEASE)
        self.interval = interval
        now = time.time()
        self.record = dict(owner='alation', run_id='neighbour-%s' % uuid.uuid4().hex[:12], pid=dead_pid(),
                           started=now, renewed=now, renewed_boottime=123456.0, stale_after=stale_after,
                           boot_id=str(uuid.uuid4()), token=secrets.token_hex(16), machine_id=other_machine_id(),
                           hostname=hostname)
        self.renewals = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name='neighbour-lease')
        self._thread.daemon = True

    def _write(self):
        import fcntl  # pylint: disable=import-outside-toplevel
        tmp = os.path.join(os.path.dirname(self.storage), '.faults-neighbour-lease.%d' % os.getpid())
        with open(tmp, 'w') as f:
            json.dump(self.record, f)
        os.chmod(tmp, 0o600)
        fd = os.open(self.storage, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            holder = read_json(self.path)
            if self.renewals and (not holder or holder.get('token') != self.record['token']):
                os.unlink(tmp)
                return False  # taken over or removed: the neighbour does not write it back
            os.rename(tmp, self.path)
        finally:
            os.close(fd)
        self.renewals += 1
        return True

    def _beat(self):
        while not self._stop.wait(self.interval):
            self.record['renewed'] = time.time()
            self.record['renewed_boottime'] += self.interval
            if not self._write():
                return

    def start(self):
        self._write()
        self._thread.start()
        return self

    def stop(self):
        """Stop renewing; True when the lease was still the neighbour's (then it is removed)."""
        self._stop.set()
        self._thread.join()
        holder = read_json(self.path)
        ours = bool(holder) and holder.get('token') == self.record['token']
        if ours:
            os.unlink(self.path)
        return ours


def read_json(path):
    """The JSON object in ``path``, or None."""
    try:
        with open(path) as f:
            value = json.load(f)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def tree_state(top, skip=()):
    """{relative path: (kind, mode, uid, size, sha256)} of everything under ``top`` (links not followed);
    names in ``skip`` (and what is below them) left out."""
    out = {}
    if not os.path.isdir(top):
        return out
    for dirpath, dirnames, files in os.walk(top):
        dirnames[:] = [d for d in dirnames if d not in skip]
        for name in dirnames + files:
            if name in skip:
                continue
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            kind = 'link' if os.path.islink(path) else 'dir' if os.path.isdir(path) else 'file'
            digest = sha256_file(path) if kind == 'file' else (os.readlink(path) if kind == 'link' else '')
            out[os.path.relpath(path, top)] = (kind, st.st_mode & 0o7777, st.st_uid,
                                               st.st_size if kind == 'file' else 0, digest)
    return out


def tree_changes(top, before, skip=(), limit=6):
    """What changed under ``top`` since ``before`` (a tree_state), in words; [] when nothing did. What went or
    appeared inside a dir that went or appeared is not listed again; past ``limit`` entries, a count."""
    now = tree_state(top, skip)
    found = [('went', p) for p in sorted(before) if p not in now]
    found += [('changed', p) for p in sorted(before) if p in now and now[p] != before[p]]
    found += [('appeared', p) for p in sorted(now) if p not in before]
    listed = set(found)
    found = [(how, p) for how, p in found if how == 'changed' or (how, os.path.dirname(p)) not in listed]
    words = ['%s/%s %s' % (top, p, how) for how, p in found]
    return words[:limit] + (['and %d more under %s' % (len(words) - limit, top)] if len(words) > limit else [])


def kill_controller(run):
    """kill -9 the controller (ansible-playbook) and its descendants only, as an AWX cancel or a dying controller
    does; what left the tree (the detached async job: async_wrapper, the module, its programs) keeps running.
    Return ({pid: cmdline} killed, {pid: cmdline} detached and alive)."""
    stopped = set()
    for dummy in range(50):
        children = _children_map()
        tree, todo = set(), [run.pid]
        while todo:
            pid = todo.pop()
            if pid not in tree:
                tree.add(pid)
                todo.extend(children.get(pid, ()))
        new = {p for p in tree if os.path.exists('/proc/%d' % p)} - stopped
        if not new:
            break
        _signal_all(new, signal.SIGSTOP)
        stopped |= new
    killed = _kill_stopped(run, stopped)
    detached = {p for p in _marked(run.marker) if _alive(p)} - stopped
    return killed, cmdlines(detached)


def marked_alive(run):
    """The live processes that carry ``run``'s marker (after its controller died: its detached job)."""
    return {p for p in _marked(run.marker) if _alive(p)}


def job_pids(cmds):
    """Of {pid: cmdline}, the pids of an async job's module (AnsiballZ_*, async_wrapper)."""
    return [p for p, c in cmds.items() if 'AnsiballZ_' in c or 'async_wrapper' in c]


class Throttle(object):
    """Slow programs of a run down: SIGSTOP for ``stop_s``, SIGCONT for ``run_s``, over and over.

    Only programs whose name is in ``names`` (pg_basebackup, pigz, ssh ...),
    never the module's Python: its threads (the heartbeat, the controller
    watch) keep running, as they would beside a long step. A step of seconds
    lasts about (stop_s + run_s) / run_s times as long.
    """

    def __init__(self, run, names, run_s=0.05, stop_s=0.95):
        self.run = run
        self.names = set(names)
        self.run_s = run_s
        self.stop_s = stop_s
        self.seen = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name='throttle')
        self._thread.daemon = True

    def pids(self):
        found = []
        for pid, cmd in cmdlines(process_tree(self.run) | _marked(self.run.marker)).items():
            if cmd and os.path.basename(cmd.split(' ')[0]) in self.names:
                found.append(pid)
        return found

    def _loop(self):
        held = set()
        while not self._stop.is_set():
            # Looking for new programs takes a while on a busy machine: the known ones stay stopped meanwhile.
            new = set(self.pids()) - held
            _signal_all(new, signal.SIGSTOP)
            held = {p for p in held | new if _alive(p)}
            self.seen |= held
            self._stop.wait(self.stop_s)
            _signal_all(held, signal.SIGCONT)
            self._stop.wait(self.run_s)
            _signal_all(held, signal.SIGSTOP)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread.ident is not None:  # a throttle made but never started (its programs never ran) stops too
            self._thread.join()
        _signal_all(self.seen, signal.SIGCONT)
        return self


def grep_files(tops, needle):
    """The files under ``tops`` that hold ``needle`` (grep -r -l -a -F; tops that do not exist skipped)."""
    tops = [t for t in tops if os.path.exists(t)]
    if not tops:
        return []
    out = subprocess.run(['grep', '-r', '-l', '-a', '-F', '-s', '--', needle] + tops, stdout=subprocess.PIPE,
                         universal_newlines=True, check=False).stdout
    return out.split()


def log(msg):
    sys.stdout.write('[%s] %s\n' % (time.strftime('%H:%M:%S'), msg))
    sys.stdout.flush()


def one_line(text, limit=400):
    text = ' '.join(str(text).split())
    return text if len(text) <= limit else text[:limit] + '...'
