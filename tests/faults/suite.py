# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fault suite of issue 11: the backup role on its worst days, in a real Alation shell.

Each kind runs the real backup playbook (playbooks/backup.yml, the real
role, PostgreSQL 15 inside the shell, pg_probackup when present and
pg_basebackup always) in a shell of its own and checks what must hold:

- kill:        kill -9 of the whole process tree at random moments of incremental runs;
               no bad file under a final name, earlier archives byte-identical, the next run
               (once the lease is stale) succeeds without a person, the newest archive restores;
- diskfull:    the backup storage dir or the staging dir on a tmpfs too small; a clear error,
               no partial file, earlier archives untouched, staging emptied, lock released,
               the next run after freeing space succeeds;
- concurrency: 2 and 4 runs at once, a second run during each step of a first: exactly one
               runs, the others are refused naming the holder, the winner's archive verifies;
- secrets:     a distinctive database password appears nowhere: -vvv output, the report JSON,
               ansible-runner's job events, the process list, the storage dir;
- badinputs:   tests/faults/bad_inputs.py's cases against a sentinel tree;
- clock, neighbour, alation, controller, farside: the world around the run misbehaves (issue 18): archives
               named in the future, the wall clock a day back or ahead (libfaketime), another machine's lease
               and storage dir, Alation's own backup at work or due, the controller alone killed, the backup
               host full or a copy killed mid-way, two hosts with one per-host dir (tests/faults/world.py).

    python tests/faults/suite.py [--sample] [--seed N] [--kinds kill,secrets] [--only CASE] [--root DIR]

It ends with one line per kind, ``<kind>: tried N / held M``, and exits
non-zero when anything did not hold; each failure is printed with the seed,
each case that cannot run here (no pg_probackup, no sshd) as SKIPPED.
"""

import argparse
import hashlib
import os
import random
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import harness  # noqa: E402  pylint: disable=wrong-import-position
from harness import Run, log, one_line, read_json  # noqa: E402  pylint: disable=wrong-import-position
from world import STALE_AFTER, WorldKinds  # noqa: E402  pylint: disable=wrong-import-position

import alation_shell  # noqa: E402  pylint: disable=wrong-import-position,wrong-import-order
import restoring  # noqa: E402  pylint: disable=wrong-import-position,wrong-import-order

KINDS = ('kill', 'diskfull', 'concurrency', 'secrets', 'badinputs', 'clock', 'neighbour', 'alation', 'controller', 'farside')
SITE_FILE = '/etc/alation-site.bin'
# The database and archive steps run in the background and are polled every progress_interval seconds
# (default 30): a step of a few seconds here would cost a whole interval.
# The harness waits for task banners, which the free strategy prints only once a task's result is in: the
# fault suite runs the hosts' play with the linear strategy, whose banners come as a task starts.
FAST = dict(alation_backup_progress_interval=1, alation_backup_strategy='linear')
REFUSED_RE = r'another run holds the host lock .*run \S+ of .*\(pid \d+\)'
SPACE_RE = r'(?i)(no space|not enough|short of space|too small|free space|ENOSPC|is full|room)'


class Suite(WorldKinds):
    def __init__(self, args):
        self.args = args
        self.seed = args.seed
        self.rng = random.Random(self.seed)
        self.sample = args.sample
        self.root = os.path.abspath(args.root)
        self.results = dict((k, []) for k in KINDS)
        self.host = None
        self.engines = []
        self.only = args.only
        # A good archive kept from an earlier kind (outside any shell), so a later kind needs no baseline run.
        self.spare = None
        # (kind, case, reason) of the cases that cannot run here (counted neither as tried nor as held).
        self.skipped = []
        # The farside kind's backup host and its good archive.
        self.sshd = None
        self.far_good = None

    def wanted(self, case):
        """Whether --only lets ``case`` run."""
        return not self.only or self.only in case

    # -- bookkeeping ---------------------------------------------------------------------

    def record(self, kind, case, held, detail=''):
        self.results[kind].append((case, held, detail))
        if held:
            log('%s/%s: held %s' % (kind, case, one_line(detail, 200)))
        else:
            log('%s/%s: FAILED (seed %d): %s' % (kind, case, self.seed, one_line(detail, 1500)))

    # -- a shell for each kind -----------------------------------------------------------

    def shell_up(self):
        self.host = alation_shell.ShellHost(self.root, alation_shell.up(self.root, scale=1))
        self.engines = (['pg_probackup'] if self.host.has_pg_probackup else []) + ['pg_basebackup']
        return self.host

    def shell_down(self):
        harness.unmount_below(self.root)
        alation_shell.down(self.root, purge=True)
        shutil.rmtree(self.root.rstrip('/') + '.outside', ignore_errors=True)
        self.host = None

    def storage(self):
        return self.host.path(harness.STORAGE)

    def vars(self, engine=None, **extra):
        engine = engine or self.engines[0]
        out = dict(self.host.role_vars, alation_backup_engine=engine,
                   alation_backup_incremental=engine == 'pg_probackup')
        out.update(FAST)
        out.update(harness.lease_vars(STALE_AFTER))
        out.update(extra)
        return out

    def site_file(self, mbytes, path=SITE_FILE):
        """A site file of random bytes (the archive step takes a while on it) among the extra paths."""
        with open(self.host.path(path), 'wb') as f:
            for dummy in range(mbytes):
                f.write(os.urandom(1 << 20))
        return path

    def run(self, name, variables, **kw):
        return Run(name, variables, **kw).wait()

    def baseline(self, name, engine=None, **extra):
        """One good run; its archive is aged so that the next runs do not wait for a new minute."""
        r = self.run(name, self.vars(engine, **extra))
        if not r.ok():
            raise RuntimeError('the baseline run %s failed: %s\n%s' % (name, r.error(), r.tail()))
        harness.age_archives(self.storage())
        return r

    def drill(self):
        """The restore drill on the newest archive: '' when it passed, else why not."""
        r = restoring.run_restore_playbook('verify_backup.yml', restoring.restore_vars(self.host.role_vars))
        rec = r.records.get('alation-test-host', {}) if r.rc is not None else {}
        if r.rc == 0 and rec.get('result') == 'ok':
            return ''
        return 'the restore drill failed (rc %s): %s' % (r.rc, one_line(rec.get('error') or r.output[-1500:]))

    def wait_until_stale(self):
        """Sleep until the lease a killed run left is stale (stale_after + 1 s after its last renewal)."""
        holder = read_json(os.path.join(self.storage(), harness.LEASE))
        renewed = float(holder.get('renewed', holder.get('started', 0))) if holder else 0
        left = renewed + STALE_AFTER + 1 - time.time() if renewed else 0
        time.sleep(max(0, min(left, STALE_AFTER + 1)))

    def lease_left(self):
        return os.path.lexists(os.path.join(self.storage(), harness.LEASE))

    # -- kill ----------------------------------------------------------------------------

    def kind_kill(self):
        n = 3 if self.sample else 12
        self.shell_up()
        try:
            site = self.site_file(24 if self.sample else 64)
            # A whole run's duration (for the random delays): measured by a first run, or in the sample by the
            # first kill's next run (the first kill is keyed to a step).
            duration = None
            if not self.sample:
                duration = self.baseline('kill-measure', alation_backup_extra_paths=[site]).duration
                log('kill: one whole run takes %.1f s' % duration)
            steps = ['Preflight | Take the host lock', 'Stage |', 'Database |', 'Archive |', 'Cleanup |']
            kills = i = 0
            while kills < n and i < n + 6:  # a run that ends before its moment is not a kill: draw again
                engine = self.engines[i % len(self.engines)] if i < len(self.engines) else self.rng.choice(self.engines)
                compressor = self.rng.choice(['zlib', 'pigz', 'auto'])
                if duration and self.rng.random() < 0.5:
                    how, moment = 'delay', round(self.rng.uniform(0.5, duration * 0.9), 2)
                else:
                    how, moment = 'step', (self.rng.choice(steps), round(self.rng.uniform(0, 1.5), 2))
                took, killed = self.one_kill(i, engine, compressor, how, moment, site, drill=not self.sample)
                duration = duration or took
                kills += killed
                i += 1
            if self.sample:
                problem = self.drill()
                self.record('kill', 'drill-after-kills', not problem, problem or 'the newest archive restores')
        finally:
            self.shell_down()

    def one_kill(self, i, engine, compressor, how, moment, site, drill):
        storage = self.storage()
        case = 'kill-%02d-%s-%s-%s' % (i, engine, how, moment if how == 'delay' else moment[0].split(' ')[0])
        if not self.wanted(case):
            return None, True
        variables = self.vars(engine, alation_backup_extra_paths=[site], alation_backup_compressor=compressor)
        before = harness.archive_hashes(storage)
        run = Run(case, variables)
        if how == 'delay':
            deadline = time.monotonic() + moment
            while time.monotonic() < deadline and run.proc.poll() is None:
                time.sleep(0.02)
        else:
            run.wait_for_task(re.escape(moment[0]), timeout=300)
            time.sleep(moment[1])
        at = run.current_task()
        if run.proc.poll() is not None:
            run.wait()
            harness.age_archives(storage)
            if not run.ok():
                self.record('kill', case, False, 'the run failed before the kill moment: %s' % run.error())
            else:
                log('kill/%s: the run ended (ok) before the kill moment; not a kill, drawn again' % case)
            return (run.duration if run.ok() else None), False
        killed_at = run.duration
        killed = harness.kill_tree(run)
        programs = sorted(set(os.path.basename(c.split(' ')[0]) + (
            '(%s)' % re.search(r'AnsiballZ_(\w+)', c).group(1) if 'AnsiballZ_' in c else '') for c in killed.values() if c))
        problems = []
        left = harness.process_tree(run)
        if left:
            problems.append('processes left after the kill: %s' % harness.cmdlines(left))
        problems += harness.storage_problems(storage, unsealed_ok=True)
        now = harness.archive_hashes(storage)
        problems += ['earlier %s changed or went' % name for name, h in before.items() if now.get(name) != h]
        # The next run, once the lease is stale, without a person.
        self.wait_until_stale()
        nxt = self.run(case + '-next', variables)
        if not nxt.ok():
            problems.append('the next run failed: %s' % nxt.error())
        problems += ['after the next run: %s' % p for p in harness.storage_problems(storage)]
        now = harness.archive_hashes(storage)
        problems += ['earlier %s changed or went after the next run' % name for name, h in before.items()
                     if now.get(name) != h and not name.endswith('.sha256')]
        if self.lease_left():
            problems.append('the next run left the lease behind')
        if harness.temp_files(storage):
            problems.append('temporary files left after the next run: %s' % harness.temp_files(storage))
        if drill and not problems:
            problem = self.drill()
            if problem:
                problems.append(problem)
        harness.age_archives(storage)
        harness.prune_archives(storage, keep=2)
        detail = 'killed at %.1f s in %r (%d processes: %s); next run %s %s%s' % (
            killed_at, at, len(killed), ', '.join(programs), nxt.record.get('mode', '?'),
            nxt.record.get('mode_reason', ''),
            ('; took over: ' + nxt.record['lock_taken_over']) if nxt.record.get('lock_taken_over') else '')
        self.record('kill', case, not problems, '; '.join(problems) + ' | ' + detail if problems else detail)
        if self.spare is None and nxt.ok():
            self.spare = restoring.copy_archive(os.path.join(storage, harness.archives(storage)[-1]),
                                                tempfile.mkdtemp(prefix='faults-spare-'))
        return (nxt.duration if nxt.ok() else None), True

    # -- disk full -----------------------------------------------------------------------

    def kind_diskfull(self):
        self.shell_up()
        try:
            engine = self.engines[0]
            if self.spare is None:
                self.baseline('diskfull-baseline', engine)
                # A copy outside the storage dir, which the tmpfs of a case hides.
                self.spare = restoring.copy_archive(self.storage() + '/' + harness.archives(self.storage())[-1],
                                                    tempfile.mkdtemp(prefix='faults-spare-'))
            earlier = self.spare
            earlier_size = os.path.getsize(earlier)
            # The pg staging dir holds at least PGDATA's files.
            pg_size = int(subprocess.run(['du', '-sb', self.host.path(alation_shell.PGDATA)], stdout=subprocess.PIPE,
                                         universal_newlines=True, check=True).stdout.split()[0])
            # What pg_probackup must copy at least: the relation files (PGDATA's pg_wal it does not copy).
            base_size = int(subprocess.run(['du', '-sb', self.host.path(alation_shell.PGDATA + '/base')],
                                           stdout=subprocess.PIPE, universal_newlines=True,
                                           check=True).stdout.split()[0])
            log('diskfull: earlier archive %d bytes, PGDATA %d bytes (base %d)' % (earlier_size, pg_size, base_size))
            admin = alation_shell.shell_ids(self.root, 'alationadmin')
            # Room for the earlier archive and its .sha256, and a third of the relation files.
            small = '%dk' % ((earlier_size + 2 ** 20 + base_size // 3) // 1024)
            for space_check in ([self.rng.choice((True, False))] if self.sample else (True, False)):
                self.diskfull_case('storage-too-small-for-pg-staging-space_check-%s' % space_check, 'storage',
                                   small, admin, earlier, dict(alation_backup_space_check=space_check))
            site = self.site_file(24 if self.sample else 48)
            self.diskfull_case('storage-filled-during-archive', 'storage', '%dk' % ((earlier_size * 2 + 300 * 2 ** 20) // 1024),
                               admin, earlier, dict(alation_backup_pg_staging_dir='/data2/pgstage',
                                                    alation_backup_extra_paths=[site],
                                                    alation_backup_compressor='zlib'), filler=True)
            big = self.site_file(16, '/etc/alation-site-16m.bin')
            self.diskfull_case('staging-too-small-for-extra-paths', 'staging', '4m', admin, earlier,
                               dict(alation_backup_extra_paths=[big]))
        finally:
            self.shell_down()

    def diskfull_case(self, case, where, size, ids, earlier, extra, filler=False):
        if not self.wanted(case):
            return
        engine = self.engines[0]
        mount_at = self.host.path(harness.STORAGE if where == 'storage' else harness.STAGING)
        mode = 0o755 if where == 'storage' else 0o700
        variables = self.vars(engine, **extra)
        problems = []
        with harness.tmpfs(mount_at, size, ids[0], ids[1], mode):
            storage = self.storage()
            if where == 'storage':
                restoring.copy_archive(earlier, storage)
            before = harness.archive_hashes(storage)
            run = Run(case, variables)
            fill_thread = None
            if filler:
                fill_thread = threading.Thread(target=self._fill_when_writing, args=(run, storage))
                fill_thread.start()
            run.wait()
            if fill_thread:
                fill_thread.join()
            err = run.error()
            if run.rc == 0 or run.record.get('result') != 'failed':
                problems.append('the run did not fail (rc %s, %s)' % (run.rc, run.record.get('result')))
            elif not re.search(SPACE_RE, err):
                problems.append('the error does not say space ran out: %s' % err)
            problems += harness.storage_problems(storage)
            now = harness.archive_hashes(storage)
            problems += ['earlier %s changed or went' % n for n, h in before.items() if now.get(n) != h]
            staging = self.host.path(harness.STAGING)
            if harness.dir_entries(staging):
                problems.append('the staging dir is not empty: %s' % harness.dir_entries(staging)[:5])
            if self.lease_left():
                problems.append('the lease was left behind')
            # Free the space, then the next run must succeed.
            if filler and os.path.exists(os.path.join(storage, 'filler.bin')):
                os.unlink(os.path.join(storage, 'filler.bin'))
            else:
                harness.remount_size(mount_at, '1g')
            harness.age_archives(storage)
            nxt = self.run(case + '-next', variables)
            if not nxt.ok():
                problems.append('the next run after freeing space failed: %s' % nxt.error())
            problems += ['after the next run: %s' % p for p in harness.storage_problems(storage)]
        self.record('diskfull', case, not problems, '; '.join(problems) or 'refused: %s' % err)

    @staticmethod
    def _fill_when_writing(run, storage):
        """Another writer fills the storage dir once the archive's temporary file appears."""
        tmp_re = re.compile(r'^\..*_alation_backup\.tar\.gz\.[A-Za-z0-9-]+\.\d+\.tmp$')
        while run.proc.poll() is None:
            if any(tmp_re.match(n) for n in os.listdir(storage)):
                harness.fill(os.path.join(storage, 'filler.bin'))
                return
            time.sleep(0.005)

    # -- concurrency ---------------------------------------------------------------------

    def kind_concurrency(self):
        self.shell_up()
        try:
            site = self.site_file(32 if self.sample else 64)
            # The first run is the baseline and the check that a live run keeps its lease renewed.
            self.live_lease(dict(alation_backup_extra_paths=[site]))
            variables = dict(alation_backup_extra_paths=[site], alation_backup_compressor='zlib')
            for n in ((2,) if self.sample else (2, 4)):
                self.at_once(n, variables)
            steps = ['stage', 'database', 'archive', 'cleanup']
            if self.sample:
                steps = [self.rng.choice(steps)]
            else:
                steps += ['archive'] * 5  # the race of issue 11, tried again
            for i, step in enumerate(steps):
                self.mid_step_until_conclusive('%s-%d' % (step, i), step, variables)
            if not self.sample:
                self.mid_step_until_conclusive('archive-waiting-for-its-minute', 'archive', variables,
                                               wait_minute=True)
        finally:
            self.shell_down()

    def live_lease(self, extra):
        """A live run renews its lease well within stale_after (else a second run would take it over)."""
        r = Run('live-lease', self.vars(**extra))
        watcher = harness.LeaseWatcher(self.storage()).start(r.current_task)
        r.wait()
        watcher.stop()
        harness.age_archives(self.storage())
        problems = [] if r.ok() else ['the run failed: %s' % r.error()]
        # Between two modules that renew it (the tasks in between take no lease) the silence grows with the
        # host's load; at stale_after a second run would take this live run over.
        if watcher.max_silence >= STALE_AFTER:
            problems.append('the lease went %.1f s unrenewed (stale_after %d s) up to %r: a second run would '
                            'have taken over this live run' % (watcher.max_silence, STALE_AFTER, watcher.during))
        self.record('concurrency', 'live-lease-renewed', not problems, '; '.join(problems) or
                    'longest unrenewed %.1f s (up to %r), stale_after %d s%s' % (
                        watcher.max_silence, watcher.during, STALE_AFTER,
                        ' (WARNING: little margin)' if watcher.max_silence >= STALE_AFTER * 0.75 else ''))

    def judge_race(self, case, runs, before):
        storage = self.storage()
        winners = [r for r in runs if r.ok()]
        problems = []
        if len(winners) != 1:
            problems.append('%d runs succeeded: %s' % (len(winners), ', '.join(
                '%s rc %s %s' % (r.name, r.rc, one_line(r.error(), 200)) for r in runs)))
        for r in runs:
            if r in winners:
                continue
            if not re.search(REFUSED_RE, r.error()):
                problems.append('%s was not refused with the holder named: %s' % (r.name, r.error()))
        new = [n for n in harness.archives(storage) if n not in before]
        if len(new) != len(winners):
            problems.append('%d new archives for %d winners: %s' % (len(new), len(winners), new))
        for name in new:
            p = harness.check_archive(os.path.join(storage, name))
            if p:
                problems.append(p)
        problems += harness.storage_problems(storage)
        if self.lease_left():
            problems.append('the lease was left behind')
        harness.age_archives(storage)
        harness.prune_archives(storage, keep=2)
        refusal = next((r.error() for r in runs if r not in winners), '')
        self.record('concurrency', case, not problems, '; '.join(problems) or 'one ran; refused: %s' % refusal)

    def at_once(self, n, extra):
        if not self.wanted('%d-at-once' % n):
            return
        before = harness.archives(self.storage())
        runs = [Run('at-once-%d-%d' % (n, i), self.vars(**extra)) for i in range(n)]
        for r in runs:
            r.wait()
        self.judge_race('%d-at-once' % n, runs, before)

    def mid_step_until_conclusive(self, case, step, extra, wait_minute=False, tries=3):
        """``mid_step`` again while it was inconclusive; a case never tried is a failure, not a pass."""
        why = ''
        for dummy in range(tries):
            why = self.mid_step(case, step, extra, wait_minute=wait_minute)
            if not why:
                return
            log('concurrency/mid-%s: inconclusive (%s), again' % (case, why))
        self.record('concurrency', 'mid-' + case, False, 'inconclusive %d times, never tried: %s' % (tries, why))

    def mid_step(self, case, step, extra, wait_minute=False):
        """A second run B whose lock task runs while the first, A, is in ``step``.

        B is started first and frozen at its lock task's banner, so it reaches
        the lock within a second of being thawed; A is frozen meanwhile in the
        short steps (stage, cleanup), so that it is still in them. '' once the
        case is recorded; else why it was inconclusive (A's module never seen
        running, A past the lock's release, A's minute come before B could try).
        """
        if not self.wanted('mid-' + case):
            return ''
        storage = self.storage()
        before = harness.archives(storage)
        # A frozen run does not renew its lease: where A is frozen (stage, cleanup), a longer stale_after keeps
        # a slow machine's delays from passing for a dead A.
        if step in ('stage', 'cleanup'):
            extra = dict(extra, **harness.lease_vars(30))
        b = Run('mid-%s-B' % case, self.vars(**extra))
        if not b.wait_for_task(re.escape('Preflight | Take the host lock'), timeout=120):
            b.wait()
            self.record('concurrency', 'mid-' + case, False, 'run B never reached the lock: %s' % b.error())
            return ''
        frozen_b = harness.freeze(b)
        if self.lease_left():
            harness.thaw(frozen_b)
            b.wait()
            self.record('concurrency', 'mid-' + case, False, 'B took the lock before it could be frozen (harness)')
            return ''
        if wait_minute:
            # A waits for its minute from the archive task on (some 10 s after its start): started early in a
            # minute, its wait outlasts stale_after.
            time.sleep((60 - time.time() % 60) % 60)
        a = Run('mid-%s-A' % case, self.vars(**extra))
        first_task = {'stage': 'Stage |', 'database': 'Database | Back up', 'archive': 'Archive |',
                      'cleanup': 'Cleanup | Empty'}[step]
        module = {'stage': 'staging_dir', 'database': self.engines[0], 'archive': 'archive',
                  'cleanup': 'cleanup'}[step]
        reached = a.wait_for_task(re.escape(first_task), timeout=300)
        if wait_minute and reached:
            # An archive of this minute already there: A's archive waits for the next minute, lease renewed.
            name = harness.archives(storage)[-1]
            stamp = time.strftime('%Y%m%d%H%M', time.gmtime())
            planted = re.sub(r'^\d{12}', stamp, name)
            if not os.path.exists(os.path.join(storage, planted)):
                shutil.copy2(os.path.join(storage, name), os.path.join(storage, planted))
                before = before + [planted]
        deadline = time.monotonic() + 60
        running = False
        while reached and a.proc.poll() is None and time.monotonic() < deadline:
            running = harness.module_running(a, module)
            if running:
                break
            time.sleep(0.02)
        frozen_a = harness.freeze(a) if step in ('stage', 'cleanup') else set()
        in_task = a.current_task()
        inconclusive = ''
        if reached and not running:
            inconclusive = 'module %s of A never seen running (A in %r)' % (module, in_task)
        elif step == 'cleanup' and not self.lease_left():
            inconclusive = 'A had released the host lock when it was frozen'  # B may then run: not a race
        elif wait_minute:
            time.sleep(STALE_AFTER + 5)  # past stale_after: only the heartbeat keeps A's lease
            if not harness.module_running(a, module):
                inconclusive = 'A was done waiting for its minute before B could try'
        if inconclusive:
            harness.thaw(frozen_b)
            harness.thaw(frozen_a)
            b.wait()
            a.wait()
            harness.age_archives(storage)
            harness.prune_archives(storage, keep=2)
            return inconclusive
        harness.thaw(frozen_b)
        b.wait_for(r'^(fatal|ok|changed): \[', timeout=120)
        b.wait()
        harness.thaw(frozen_a)
        a.wait()
        detail_case = 'mid-%s' % case
        if not reached:
            self.record('concurrency', detail_case, False, 'A never reached %s: %s' % (step, a.error()))
            return ''
        log('concurrency/%s: B tried while A was in %r' % (detail_case, in_task))
        self.judge_race(detail_case, [a, b], before)
        return ''

    # -- secrets -------------------------------------------------------------------------

    def kind_secrets(self):
        self.shell_up()
        host = self.host
        password = 'FaultSuite-%s-Qz7' % hashlib.sha256(str(self.seed).encode()).hexdigest()[:12]
        hba = host.path(alation_shell.PGDATA + '/pg_hba.conf')
        with open(hba) as f:
            original = f.read()
        try:
            host.psql("ALTER ROLE alation PASSWORD '%s'" % password)
            with open(hba, 'w') as f:
                f.write(re.sub(r'^(host\s.*\s)trust$', r'\1scram-sha-256', original, flags=re.M))
            self.pg_reload()
            refused = Run('secrets-no-password', self.vars()).wait()
            if refused.ok():
                self.record('secrets', 'password-required', False,
                            'a run without the password succeeded: scram-sha-256 is not in force')
                return
            site = self.site_file(8)
            variables = self.vars(alation_backup_pg_password=password, alation_backup_extra_paths=[site])
            seen = []
            stop = threading.Event()
            poller = threading.Thread(target=self._poll_processes, args=(password, seen, stop))
            poller.start()
            try:
                plain = Run('secrets-vvv', variables, verbosity=3).wait()
                harness.age_archives(self.storage())
                runner_problems, runner_ok = self.secrets_runner(variables, password)
            finally:
                stop.set()
                poller.join()
            problems = []
            if not plain.ok():
                problems.append('the -vvv run failed: %s' % plain.error())
            if password in plain.output:
                lines = [line for line in plain.output.splitlines() if password in line]
                problems.append('-vvv output holds the password: %s' % one_line(lines[0], 300))
            if os.path.exists(plain.report_path):
                with open(plain.report_path) as f:
                    if password in f.read():
                        problems.append('the report JSON holds the password')
            else:
                problems.append('the -vvv run wrote no report JSON')
            if not runner_ok:
                problems.append('the ansible-runner run failed')
            problems += runner_problems
            if seen:
                problems.append('the process list held the password: %s' % one_line(seen[0], 300))
            problems += self.grep_tree(self.host.path('/data2'), password)
            self.record('secrets', 'password-%s' % password[:14], not problems, '; '.join(problems) or
                        'not in -vvv output (%d lines), report, job events, %s process scans, /data2' % (
                            len(plain.lines), len(seen) or 'all'))
        finally:
            with open(hba, 'w') as f:
                f.write(original)
            self.pg_reload()
            self.shell_down()

    def pg_reload(self):
        self.host.run([alation_shell.PG_BIN + '/pg_ctl', '-D', alation_shell.PGDATA, 'reload'])
        time.sleep(1)

    @staticmethod
    def _poll_processes(password, seen, stop):
        needle = password.encode()
        while not stop.is_set():
            for entry in os.listdir('/proc'):
                if not entry.isdigit():
                    continue
                try:
                    with open('/proc/%s/cmdline' % entry, 'rb') as f:
                        cmd = f.read()
                except OSError:
                    continue
                if needle in cmd:
                    seen.append(cmd.replace(b'\0', b' ').decode('utf-8', 'replace'))
            stop.wait(0.1)

    @staticmethod
    def grep_tree(top, password):
        found = subprocess.run(['grep', '-r', '-l', '-a', '-F', password, top], stdout=subprocess.PIPE,
                               universal_newlines=True, check=False).stdout.split()
        return ['%s holds the password' % p for p in found]

    def secrets_runner(self, variables, password):
        """The same run through ansible-runner (what AWX uses): its artifacts must not hold the password."""
        import ansible_runner  # pylint: disable=import-outside-toplevel
        pdd = tempfile.mkdtemp(prefix='faults-runner-')
        inventory = os.path.join(pdd, 'inventory.json')
        with open(inventory, 'w') as f:
            f.write('{"alation": {"hosts": {"alation-test-host": {"ansible_connection": "local", '
                    '"ansible_python_interpreter": "%s"}}}}' % sys.executable)
        report = os.path.join(pdd, 'report.json')
        bindir = os.path.dirname(sys.executable)
        env = dict(ANSIBLE_COLLECTIONS_PATH=os.path.join(harness.REPO, '.build', 'collections'),
                   ANSIBLE_NOCOLOR='1', ANSIBLE_RETRY_FILES_ENABLED='0', ANSIBLE_LOCALHOST_WARNING='0',
                   PATH=bindir + ':' + os.environ.get('PATH', ''))
        r = ansible_runner.run(private_data_dir=pdd, playbook=os.path.join(harness.REPO, 'playbooks', 'backup.yml'),
                               inventory=inventory, verbosity=3, quiet=True, envvars=env,
                               extravars=dict(variables, alation_backup_become=False,
                                              alation_backup_report_path=report))
        problems = []
        artifacts = os.path.join(pdd, 'artifacts')
        events = 0
        for dirpath, dummy, files in os.walk(artifacts):
            for name in files:
                path = os.path.join(dirpath, name)
                events += name.endswith('.json')
                with open(path, 'rb') as f:
                    if password.encode() in f.read():
                        problems.append('ansible-runner artifact %s holds the password' % os.path.relpath(path, pdd))
        if os.path.exists(report):
            with open(report) as f:
                if password in f.read():
                    problems.append('the ansible-runner report JSON holds the password')
        if not events:
            problems.append('ansible-runner wrote no job events')
        ok = r.rc == 0
        if not ok:
            tail = ''
            stdout = os.path.join(artifacts, r.config.ident, 'stdout') if r.config else ''
            if stdout and os.path.exists(stdout):
                with open(stdout) as f:
                    tail = f.read()[-1500:]
            problems.append('ansible-runner run: rc %s %s' % (r.rc, one_line(tail)))
        harness.age_archives(self.storage())
        shutil.rmtree(pdd, ignore_errors=True)
        return problems, ok

    # -- bad inputs ----------------------------------------------------------------------

    def kind_badinputs(self):
        import bad_inputs  # pylint: disable=import-outside-toplevel
        self.shell_up()
        try:
            cases = list(bad_inputs.CASES)
            if self.sample:
                batch = [c for c in cases if c['expect'][0] == 'refused' and 'setup' not in c]
                single = [c for c in cases if c not in batch]
                chosen = set(c['id'] for c in self.rng.sample(single, min(3, len(single))))
                cases = [c for c in cases if c in batch or c['id'] in chosen]
            # The cases' runs take the shell's role vars, with the suite's lease and polling.
            self.host.role_vars = dict(self.host.role_vars, **dict(FAST, **harness.lease_vars(STALE_AFTER)))
            check = sentinels(self.host)
            for case_id, held, detail in bad_inputs.run_cases(self.host, cases, check):
                self.record('badinputs', case_id, held, detail)
        finally:
            self.shell_down()


# -- the sentinel tree of the bad inputs --------------------------------------------------

SENTINEL_FILES = ('/faults-sentinel.txt', '/data2/faults-sentinel.txt', '/data2/keep/faults-sentinel.txt',
                  '/data2/backup/faults-sentinel.txt', '/data1/pgsql/data/faults-sentinel.txt',
                  '/etc/faults-sentinel.conf', '/opt/faults-sentinel.txt', '/data2/keep/sub/deep.txt')
# Symlinks in the shell leading to sentinel trees, inside the shell and out of it.
SENTINEL_LINKS = (('/data2/keep-link', '/data2/keep'), ('/data2/outside-link', None))


def sentinels(host):
    """Plant sentinel files and return check(snapshot=None): the state of every sentinel (content, mode,
    owner, and the link targets), or, given a snapshot, the sentinel paths that changed or went since.

    The sentinels are files in /data2, in the shell root, in PGDATA, in the
    backup storage dir, under /etc and /opt, in a host dir outside the shell,
    and what lies behind symlinks in /data2 (the links themselves too). Also
    watched: every earlier archive and .sha256 in the storage dir, and every
    file of PGDATA's top level that PostgreSQL does not rewrite.
    """
    outside = host.root.rstrip('/') + '.outside'
    paths = [host.path(p) for p in SENTINEL_FILES]
    paths += [os.path.join(outside, 'faults-sentinel.txt'), os.path.join(outside, 'sub', 'faults-deep.txt')]
    for n, p in enumerate(paths):
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, 'w') as f:
            f.write('sentinel %d %s\n' % (n, p))
        os.chmod(p, 0o640 if n % 2 else 0o604)
        os.chown(p, 4501 if n % 2 else 0, 0)
    links = []
    for link, target in SENTINEL_LINKS:
        lp = host.path(link)
        if not os.path.lexists(lp):
            os.symlink(host.path(target) if target else outside, lp)
        links.append(lp)
    pgdata = host.path(alation_shell.PGDATA)
    for name in ('PG_VERSION', 'pg_hba.conf', 'pg_ident.conf', 'postgresql.conf'):
        paths.append(os.path.join(pgdata, name))
    trees = [host.path('/data2/keep'), outside]

    def state(path):
        try:
            st = os.lstat(path)
        except OSError as e:
            return ('missing', e.errno)
        if stat.S_ISLNK(st.st_mode):
            return ('link', os.readlink(path))
        if stat.S_ISREG(st.st_mode):
            return (st.st_mode, st.st_uid, st.st_gid, harness.sha256_file(path))
        return (st.st_mode, st.st_uid, st.st_gid)

    def check(snapshot=None):
        storage = host.path(harness.STORAGE)
        if snapshot is None and os.path.isdir(storage) and not os.path.islink(storage):
            # Taken before each case's run: earlier archives are moved to earlier minutes first, so that a
            # case expected to back up does not wait for a new minute (archive names have minute resolution).
            try:
                harness.age_archives(storage)
            except OSError:
                pass  # a case made the storage dir immutable or read-only: its run then waits, or is refused
        now = dict((p, state(p)) for p in paths + links)
        if os.path.isdir(storage) and not os.path.islink(storage):
            for name in os.listdir(storage):
                if harness.ARCHIVE_RE.match(name.replace('.sha256', '')) or name.endswith('.sha256'):
                    now[os.path.join(storage, name)] = state(os.path.join(storage, name))
        for top in trees:
            for dirpath, dirnames, files in os.walk(top):
                for name in dirnames + files:
                    now[os.path.join(dirpath, name)] = state(os.path.join(dirpath, name))
        if snapshot is None:
            return now
        changed = [p for p, s in sorted(snapshot.items()) if now.get(p) != s]
        # New entries count only in the sentinel trees (a correct backup adds archives to the storage dir).
        changed += [p for p in sorted(now) if p not in snapshot and any(p.startswith(t + '/') for t in trees)]
        return changed
    return check


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--seed', type=int, default=None, help='the RNG seed (default: random, printed)')
    p.add_argument('--sample', action='store_true', help='a seeded subset of every kind (make test)')
    p.add_argument('--kinds', default=','.join(KINDS), help='comma-separated, of: %s' % ', '.join(KINDS))
    p.add_argument('--only', default='', help='only the cases whose name holds this (baselines still run)')
    p.add_argument('--root', default='/tmp/faults-shell', help='where the shell is brought up')
    args = p.parse_args(argv)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 10 ** 6)
    kinds = [k.strip() for k in args.kinds.split(',') if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        p.error('unknown kinds %s (known: %s)' % (', '.join(unknown), ', '.join(KINDS)))
    # Every run's workdir, the spare archive and the bad inputs' dirs go under one scratch dir, removed at the end.
    scratch = tempfile.mkdtemp(prefix='faults-suite-')
    os.chmod(scratch, 0o755)
    tempfile.tempdir = scratch
    suite = Suite(args)
    started = time.monotonic()
    log('fault suite: seed %d%s, kinds %s (reproduce: python tests/faults/suite.py --seed %d%s --kinds %s)'
        % (args.seed, ', sample' if args.sample else '', ','.join(kinds), args.seed,
           ' --sample' if args.sample else '', ','.join(kinds)))
    for kind in kinds:
        t = time.monotonic()
        try:
            getattr(suite, 'kind_' + kind)()
        except Exception:  # pylint: disable=broad-except
            suite.record(kind, 'harness', False, 'the kind stopped: %s' % traceback.format_exc())
            suite.shell_down()
        log('%s done in %.0f s' % (kind, time.monotonic() - t))
    failed = 0
    print('fault suite: seed %d%s, %.0f s'
          % (args.seed, ' (sample)' if args.sample else '', time.monotonic() - started))
    for kind in kinds:
        res = suite.results[kind]
        held = sum(1 for dummy, ok, dummy2 in res if ok)
        failed += len(res) - held
        for case, ok, detail in res:
            if not ok:
                print('  FAILED %s/%s: %s' % (kind, case, one_line(detail, 600)))
        for skipped_kind, case, reason in suite.skipped:
            if skipped_kind == kind:
                print('  SKIPPED %s/%s: %s' % (kind, case, reason))
        print('%s: tried %d / held %d' % (kind, len(res), held))
    if failed:
        print('fault suite: %d did not hold (seed %d)' % (failed, args.seed))
    tempfile.tempdir = None
    shutil.rmtree(scratch, ignore_errors=True)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
