# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fault suite's kinds of issue 18: the world around the run misbehaves.

- clock:      archives named in 2031 beside the run's own (keep_count 3): the run's archive stays, the future ones
              are left alone and named in the record's ``future_archives``; a killed run's lease after the
              wall clock went back a day (libfaketime on the next run) is taken over within stale_after; a
              live run's lease is not taken by a run whose clock is a day ahead;
- neighbour:  another machine's live lease (renewed by a thread, its own machine id and host name) is never
              taken over: the run is refused naming that host, the storage and staging dirs unchanged; a
              storage dir whose owner marker names another machine is refused;
- alation:    Alation's own backup at work (a real pg_probackup backup of the shell's catalog held with
              SIGSTOP; a process whose cwd is the staging dir) is refused naming its pid; Alation's schedule
              due now is refused, and runs with alation_backup_alation_schedule_margin 0;
- controller: the controller alone killed (kill -9 of ansible-playbook and its workers) during the database
              and the archive step: the detached host job stops within alation_backup_controller_timeout and
              a margin, the lease is gone, the next run starts at once and succeeds, and no file in the
              module temp dirs, /dev/shm or /run holds the database password; in the full suite only (not
              --sample), also during the off-host copy (slowed by an ssh that sleeps before it carries the
              archive; no file there holds a line of the copy's key after) and the restore drill's unpacking
              and rebuild (alation_restore_controller_timeout; the scratch dir's lock gone, the next drill
              passes); the cancel state names the step;
- farside:    the backup host's per-host dir full (a tmpfs): far-side retention runs first and the copy fits,
              or the copy fails naming the free and needed bytes; a copy killed mid-way leaves a temp file
              there that the next run removes; a per-host dir owned by another machine is refused.

Each case runs the real role in a real Alation shell, as the other kinds do (``WorldKinds`` is mixed into
``suite.Suite``).
"""

import hashlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

import harness
from harness import Run, log, one_line, read_json

import alation_shell  # pylint: disable=wrong-import-order
import restoring  # pylint: disable=wrong-import-order

# Archives named by a clock that ran ahead (a bad NTP source, a VM restored from a snapshot).
FUTURE_STAMPS = ('203101010101', '203102020202', '203103030303')
NEIGHBOUR_HOST = 'alation-neighbour-2'
OWNER_HOST = 'alation-neighbour-3'
TWIN_HOST = 'alation-twin'
# alation_backup_controller_timeout in the controller kind, and how much longer the detached job may take to stop
# (its programs get a grace period after SIGTERM, the module its own cleanup).
CONTROLLER_TIMEOUT = 10
CONTROLLER_MARGIN = 30
# Where a module's payload or a copy's key could outlive a step on the host.
SECRET_DIRS = ('/root/.ansible/tmp', '/root/.ansible_async', '/dev/shm', '/run')
REFUSED_LOCK_RE = r'another run holds the host lock'
# The suite's alation_backup_lock_stale_after (short, so that a killed run's lease frees itself soon).
STALE_AFTER = 30
# The programs of the long steps, slowed down so that a step outlasts the controller timeout and its margin:
# (names, seconds running, seconds stopped). The database engine mostly receives what the server sends, a few MB a
# slice: it is held (a step that hangs, as on a slow checkpoint); pigz gets 0.3% of the time.
STEP_PROGRAMS = {'database': (('pg_basebackup', 'pg_probackup'), 0.0, 1.0), 'archive': (('pigz',), 0.003, 0.997)}
STEP_TASK = {'database': 'Database | Back up', 'archive': 'Archive |'}
# The restore drill's long steps: their first task in the background, and their programs (slowed as pigz is).
DRILL_TASK = {'extract': 'Extract | Unpack the archive', 'rebuild': 'Rebuild | Rebuild the data directory'}
DRILL_PROGRAMS = {'extract': ('tar', 'pigz', 'gzip'), 'rebuild': ('tar', 'pg_probackup')}
RESTORE_LOCK = '/data2/backup/.alation_restore.lock'
# The cancel state a step that stopped itself writes beside its lease (in the backup storage dir).
CANCEL_STATE = '.alation_backup.cancelled.json'
# The sleep of the copy's slow ssh (before it carries the archive): the copy outlasts the controller timeout.
COPY_SLEEP = '600.7'


def _utc_fields():
    t = time.gmtime()
    return t.tm_hour, t.tm_min


class WorldKinds(object):
    """The kinds of issue 18, for ``suite.Suite`` (which has record, vars, run, baseline, storage ...)."""

    # -- shared ------------------------------------------------------------------------

    def skip(self, kind, case, reason):
        """A case that cannot run here: printed as SKIPPED, counted neither as tried nor as held."""
        self.skipped.append((kind, case, reason))
        log('%s/%s: SKIPPED: %s' % (kind, case, reason))

    def good_archive(self, name='good-archive', engine=None):
        """A good archive outside any shell: the suite's spare, else a baseline run's (kept as the spare)."""
        if self.spare is None:
            self.baseline(name, engine)
            self.spare = restoring.copy_archive(os.path.join(self.storage(), harness.archives(self.storage())[-1]),
                                                tempfile.mkdtemp(prefix='faults-spare-'))
        return self.spare

    def staging(self):
        return self.host.path(harness.STAGING)

    def pg_staging(self):
        return self.host.path(harness.PG_STAGING)

    def plant_work(self, who):
        """Files of another backup at work: in the staging dir and the pg staging dir. Return their paths."""
        paths = []
        for d in (self.staging(), self.pg_staging()):
            os.makedirs(d, exist_ok=True)
            p = os.path.join(d, 'faults-%s-at-work.bin' % who)
            with open(p, 'wb') as f:
                f.write(os.urandom(4096))
            paths.append(p)
        return paths

    def dirs_state(self, skip=()):
        """The storage dir (the pg staging dir within it) and the staging dir, for tree_changes."""
        skip = (harness.LEASE,) + tuple(skip)
        return [(top, harness.tree_state(top, skip), skip) for top in (self.storage(), self.staging())]

    @staticmethod
    def dirs_changes(states):
        changes = []
        for top, before, skip in states:
            changes += [c for c in harness.tree_changes(top, before, skip)
                        if not re.search(r'/\.alation_backup\.lock\.\d+\.tmp', c)]
        return changes

    def refused(self, run, needles, what):
        """Problems when ``run`` was not refused, or its error does not hold each of ``needles``."""
        if run.ok() or run.record.get('result') == 'ok':
            taken = run.record.get('lock_taken_over')
            return ['the run was not refused (%s): it succeeded%s' % (what, '; lock_taken_over: %s' % taken if taken else '')]
        err = run.error()
        missing = [n for n in needles if str(n) not in err]
        if missing:
            return ['refused (%s) without naming %s: %s' % (what, ', '.join(map(str, missing)), one_line(err, 600))]
        return []

    # -- clock ---------------------------------------------------------------------------

    def kind_clock(self):
        self.shell_up()
        try:
            cases = [('future-archives', self.clock_future), ('lease-after-clock-back-a-day', self.clock_back),
                     ('live-lease-vs-clock-a-day-ahead', self.clock_forward)]
            if self.sample:
                cases = [self.rng.choice(cases)]
            for case, fn in cases:
                if self.wanted(case):
                    fn(case)
        finally:
            self.shell_down()

    def clock_future(self, case):
        storage = self.storage()
        good = self.good_archive('clock-baseline')
        harness.age_archives(storage)
        planted = [harness.plant_archive(good, storage, stamp) for stamp in FUTURE_STAMPS]
        before = harness.archive_hashes(storage)
        r = self.run(case, self.vars(alation_backup_keep_count=3))
        problems = [] if r.ok() else ['the run failed: %s' % r.error()]
        names = harness.archives(storage)
        own = os.path.basename(r.record.get('archive') or '')
        if not own:
            problems.append('the record names no archive of this run')
        elif own not in names:
            problems.append("retention removed the run's own archive %s (left: %s; removed: %s)" % (
                own, ', '.join(names), ', '.join(os.path.basename(p) for p in r.record.get('retention', {}).get('removed', []))))
        now = harness.archive_hashes(storage)
        for name in planted:
            for n in (name, name + '.sha256'):
                if now.get(n) != before.get(n):
                    problems.append('the future %s %s' % (n, 'went' if n not in now else 'changed'))
        if 'future_archives' not in r.record:
            problems.append('the record has no future_archives field')
        else:
            listed = ' '.join(str(x) for x in r.record['future_archives'] or [])
            missing = [n for n in planted if n not in listed]
            if missing:
                problems.append("the record's future_archives (%s) does not name %s" % (one_line(listed, 300), ', '.join(missing)))
        problems += harness.storage_problems(storage)
        for name in planted:
            harness.remove_archive(storage, name)
        harness.age_archives(storage)
        self.record('clock', case, not problems, '; '.join(problems) or
                    "the run's archive %s kept beside %d archives named in 2031, untouched; future_archives: %s"
                    % (own, len(planted), one_line(' '.join(map(str, r.record.get('future_archives') or [])), 200)))

    def clock_back(self, case):
        """A run killed mid-way; stale_after later the next run starts with the wall clock a day back."""
        storage = self.storage()
        site = self.site_file(16)
        variables = self.vars(alation_backup_extra_paths=[site], alation_backup_compressor='zlib')
        first = Run(case + '-killed', variables)
        if not first.wait_for_task(re.escape('Archive |'), timeout=300) or first.proc.poll() is not None:
            first.wait()
            harness.age_archives(storage)
            self.record('clock', case, False, 'the first run never reached its archive step to be killed there: %s'
                        % first.error())
            return
        time.sleep(0.5)
        killed = harness.kill_tree(first)
        holder = read_json(os.path.join(storage, harness.LEASE))
        if not holder:
            self.record('clock', case, False, 'the killed run left no lease (%d processes killed): nothing to take over'
                        % len(killed))
            return
        self.wait_until_stale()
        env = harness.faketime_env('-1d')
        try:
            shift = harness.faketime_probe(env)
        except RuntimeError as e:
            self.record('clock', case, False, 'harness: %s' % e)
            return
        if abs(shift + 86400) > 600:
            self.record('clock', case, False, "harness: under FAKETIME=-1d a module's Python is %+.0f s off, not "
                        "-86400 s: libfaketime does not reach the modules" % shift)
            return
        silence = time.time() - float(holder.get('renewed', holder.get('started', 0)))
        nxt = Run(case + '-next', variables, env=env).wait()
        problems = []
        if not nxt.ok():
            problems.append("the next run (a module's wall clock %+.0f s, started %.0f s after the killed run last renewed "
                            "its lease, stale_after %d s) failed: %s" % (shift, silence, STALE_AFTER, nxt.error()))
        elif not nxt.record.get('lock_taken_over'):
            problems.append("the next run succeeded but its record's lock_taken_over is empty")
        problems += harness.storage_problems(storage)
        if self.lease_left():
            if nxt.ok():
                problems.append('the next run left the lease behind')
            self.wait_until_stale()
            os.unlink(os.path.join(storage, harness.LEASE))
        harness.age_archives(storage)
        harness.prune_archives(storage, keep=2)
        self.record('clock', case, not problems, '; '.join(problems) or
                    "a module's clock %+.0f s; the killed run's lease taken over: %s" % (shift, nxt.record['lock_taken_over']))

    def clock_forward(self, case):
        """Run A works; run B, its wall clock a day ahead, tries the lock then: it must be refused."""
        storage = self.storage()
        site = self.site_file(24)
        variables = self.vars(alation_backup_extra_paths=[site], alation_backup_compressor='zlib')
        before = harness.archives(storage)
        env = harness.faketime_env('+1d')
        # B first, frozen at its lock task, so that it tries the lock within a second of being thawed.
        b = Run(case + '-B', variables, env=env)
        if not b.wait_for_task(re.escape('Preflight | Take the host lock'), timeout=180):
            b.wait()
            self.record('clock', case, False, 'run B (FAKETIME=+1d) never reached the lock: %s' % b.error())
            return
        frozen_b = harness.freeze(b)
        if self.lease_left():
            harness.thaw(frozen_b)
            b.wait()
            self.record('clock', case, False, 'harness: B took the lock before it could be frozen')
            return
        a = Run(case + '-A', variables)
        reached = a.wait_for_task(re.escape('Archive |'), timeout=300)
        deadline = time.monotonic() + 60
        while reached and not harness.module_running(a, 'archive') and a.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        in_task = a.current_task()
        harness.thaw(frozen_b)
        b.wait()
        a.wait()
        problems = []
        if not reached:
            problems.append('A never reached its archive step: %s' % a.error())
        if b.ok():
            problems.append("B, its wall clock a day ahead, ran while A was in %r: it took over A's live lease (%s)"
                            % (in_task, b.record.get('lock_taken_over') or 'lock_taken_over empty'))
        elif not re.search(REFUSED_LOCK_RE, b.error()):
            problems.append('B (clock a day ahead) was not refused for the lock: %s' % one_line(b.error(), 500))
        if not a.ok():
            problems.append('A failed: %s' % a.error())
        new = [n for n in harness.archives(storage) if n not in before]
        if len(new) != (1 if a.ok() else 0) + (1 if b.ok() else 0) or len(new) > 1:
            problems.append('new archives: %s' % new)
        problems += harness.storage_problems(storage)
        if self.lease_left():
            problems.append('the lease was left behind')
            self.wait_until_stale()
            os.unlink(os.path.join(storage, harness.LEASE))
        harness.age_archives(storage)
        harness.prune_archives(storage, keep=2)
        self.record('clock', case, not problems, '; '.join(problems) or
                    'B (FAKETIME=+1d) refused while A was in %r: %s' % (in_task, one_line(b.error(), 300)))

    # -- neighbour -----------------------------------------------------------------------

    def kind_neighbour(self):
        self.shell_up()
        try:
            if self.spare:
                # Another machine's archive in the shared storage dir, which nothing here may touch.
                harness.plant_archive(self.spare, self.storage(), time.strftime('%Y%m%d0101', time.gmtime(time.time() - 86400)))
            for case, fn in (('live-lease-of-another-machine', self.neighbour_lease),
                             ('storage-dir-owned-by-another-machine', self.neighbour_marker)):
                if self.wanted(case):
                    fn(case)
        finally:
            self.shell_down()

    def neighbour_lease(self, case):
        work = self.plant_work('neighbour')
        lease = harness.ForeignLease(self.storage(), NEIGHBOUR_HOST, STALE_AFTER).start()
        try:
            states = self.dirs_state()
            r = self.run(case, self.vars())
        finally:
            still = lease.stop()
        problems = self.refused(r, [NEIGHBOUR_HOST], "another machine's live lease")
        if not still:
            problems.append("the neighbour's lease is no longer the neighbour's (taken over or removed)")
        problems += self.dirs_changes(states)
        for p in work:
            if os.path.exists(p):
                os.unlink(p)
        self.clean_after(r)
        self.record('neighbour', case, not problems, '; '.join(problems) or
                    'refused, nothing touched (%d lease renewals by %s): %s'
                    % (lease.renewals, NEIGHBOUR_HOST, one_line(r.error(), 300)))

    def neighbour_marker(self, case):
        work = self.plant_work('owner')
        marker = harness.write_owner_marker(self.storage(), OWNER_HOST)
        states = self.dirs_state()
        r = self.run(case, self.vars())
        problems = self.refused(r, [OWNER_HOST], 'a storage dir whose owner marker names another machine')
        problems += self.dirs_changes(states)
        for p in work + [marker]:
            if os.path.exists(p):
                os.unlink(p)
        self.clean_after(r)
        self.record('neighbour', case, not problems, '; '.join(problems) or 'refused, nothing touched: %s'
                    % one_line(r.error(), 300))

    def clean_after(self, r):
        """After a case: what a run that was not refused made is aged (the next case does not wait a minute)."""
        if r.ok():
            harness.age_archives(self.storage())

    # -- Alation's own backup --------------------------------------------------------------

    def kind_alation(self):
        self.shell_up()
        try:
            cases = [('alation-pg-probackup-running', self.alation_probackup),
                     ('process-in-staging-dir', self.alation_cwd),
                     ('schedule-due-now', self.alation_schedule)]
            if self.sample:
                # One of the processes at work, and the schedule (its margin-0 run only in the whole suite).
                cases = [self.rng.choice(cases[:2] if self.host.has_pg_probackup else cases[1:2]), cases[2]]
            for case, fn in cases:
                if self.wanted(case) or (fn == self.alation_schedule and self.wanted('schedule-margin-0') and not self.sample):
                    fn(case)
        finally:
            self.shell_down()

    def alation_probackup(self, case):
        """A real pg_probackup FULL backup of the shell's catalog, started as Alation would, held mid-way."""
        if not self.host.has_pg_probackup:
            self.skip('alation', case, 'no pg_probackup in the shell ($PG_PROBACKUP unset, none on PATH)')
            return
        # The catalog the role keeps in the pg staging dir (incremental): Alation's backup uses the same one.
        self.baseline(case + '-baseline', 'pg_probackup', alation_backup_incremental=True)
        catalog = self.host.path(harness.PG_STAGING + '/backups/alation')
        held = None
        for dummy in range(3):
            known = set(os.listdir(catalog)) if os.path.isdir(catalog) else set()
            proc = subprocess.Popen(['chroot', '--userspec=alation:alation', self.host.root, '/usr/local/bin/pg_probackup',
                                     'backup', '-B', harness.PG_STAGING, '--instance', 'alation', '-b', 'FULL', '--stream',
                                     '-h', '127.0.0.1', '-p', str(self.host.port), '-U', 'alation', '-d', 'postgres'],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, universal_newlines=True)
            deadline = time.monotonic() + 10
            new = set()
            while proc.poll() is None and time.monotonic() < deadline:
                new = (set(os.listdir(catalog)) if os.path.isdir(catalog) else set()) - known
                if new:
                    break
                time.sleep(0.005)
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGSTOP)
                held = (proc, sorted(new))
                break
            log('alation/%s: the held backup ended before it could be stopped (rc %s %s); again'
                % (case, proc.returncode, one_line(proc.stderr.read(), 200)))
        if held is None:
            self.record('alation', case, False, 'harness: a pg_probackup backup could not be held mid-way')
            return
        proc, backup_ids = held
        problems = []
        try:
            states = self.dirs_state()
            r = Run(case, self.vars()).wait(600)
            problems += self.refused(r, [proc.pid], "Alation's own pg_probackup backup at work")
            problems += self.dirs_changes(states)
        finally:
            os.kill(proc.pid, signal.SIGCONT)
            try:
                proc.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
            for backup_id in backup_ids:
                self.host.run(['/usr/local/bin/pg_probackup', 'delete', '-B', harness.PG_STAGING, '--instance', 'alation',
                               '-i', backup_id], check=False)
        self.clean_after(r)
        self.record('alation', case, not problems, '; '.join(problems) or
                    'refused while pg_probackup (pid %d, backup %s) was held: %s'
                    % (proc.pid, ','.join(backup_ids), one_line(r.error(), 300)))

    def alation_cwd(self, case):
        """Any process whose cwd is in the staging dir: Alation's backup packing there, a shell someone left."""
        work = self.plant_work('cwd')
        proc = subprocess.Popen(['sleep', '900'], cwd=self.staging())
        try:
            states = self.dirs_state()
            r = self.run(case, self.vars())
            problems = self.refused(r, [proc.pid], 'a process whose cwd is the staging dir')
            problems += self.dirs_changes(states)
        finally:
            proc.kill()
            proc.wait()
        for p in work:
            if os.path.exists(p):
                os.unlink(p)
        self.clean_after(r)
        self.record('alation', case, not problems, '; '.join(problems) or
                    'refused while sleep (pid %d) sat in the staging dir: %s' % (proc.pid, one_line(r.error(), 300)))

    def alation_schedule(self, case):
        """Alation's own schedule (alation_conf, UTC) starts now: refused by default, runs with the margin 0."""
        store = self.host.path(alation_shell.CONF) + '.store'
        with open(store) as f:
            original = f.read()
        hour, minute = _utc_fields()
        values = {'alation.backup.scheduled_hour': str(hour), 'alation.backup.scheduled_minute': str(minute),
                  'alation.backup.scheduled_day': '*'}
        lines = [line for line in original.splitlines() if line.split(' = ')[0] not in values]
        st = os.stat(store)
        try:
            with open(store, 'w') as f:
                f.write('\n'.join(lines + ['%s = %s' % kv for kv in values.items()]) + '\n')
            os.chown(store, st.st_uid, st.st_gid)
            if self.wanted(case):
                states = self.dirs_state()
                r = self.run(case, self.vars())
                problems = self.refused(r, ['%02d:%02d' % (hour, minute)], "Alation's own backup scheduled now")
                problems += self.dirs_changes(states)
                self.clean_after(r)
                self.record('alation', case, not problems, '; '.join(problems) or
                            'refused with the schedule at %02d:%02d UTC: %s' % (hour, minute, one_line(r.error(), 300)))
            if self.wanted('schedule-margin-0') and not self.sample:
                r = self.run('schedule-margin-0', self.vars(alation_backup_alation_schedule_margin=0))
                self.clean_after(r)
                self.record('alation', 'schedule-margin-0', r.ok(), 'ran with the schedule due now' if r.ok() else
                            'alation_backup_alation_schedule_margin 0 did not let it run: %s' % r.error())
        finally:
            with open(store, 'w') as f:
                f.write(original)

    # -- the controller goes away ----------------------------------------------------------

    def kind_controller(self):
        self.shell_up()
        host = self.host
        password = 'FaultCtl-%s-Wq4' % hashlib.sha256(str(self.seed).encode()).hexdigest()[:12]
        workdir = None
        try:
            # The database password is needed (scram-sha-256), as in kind secrets.
            host.psql("ALTER ROLE alation PASSWORD '%s'" % password)
            hba = host.path(alation_shell.PGDATA + '/pg_hba.conf')
            with open(hba) as f:
                text = f.read()
            with open(hba, 'w') as f:
                f.write(re.sub(r'^(host\s.*\s)trust$', r'\1scram-sha-256', text, flags=re.M))
            self.pg_reload()
            steps = ['database', 'archive']
            if self.sample:
                steps = [self.rng.choice(steps)]
            site = self.site_file(16)
            for step in steps:
                case = 'controller-killed-during-%s' % step
                if self.wanted(case):
                    self.controller_case(case, step, password, site)
            # The other long steps (the off-host copy, the drill's unpacking and rebuild): only in the full suite.
            if self.sample:
                return
            if self.wanted('controller-killed-during-copy'):
                workdir = tempfile.mkdtemp(prefix='faults-backup-host-')
                self.controller_copy('controller-killed-during-copy', password, workdir)
            for step in ('extract', 'rebuild'):
                case = 'controller-killed-during-%s' % step
                if self.wanted(case):
                    self.controller_drill(case, step, password)
        finally:
            if self.sshd:
                self.sshd.stop()
                self.sshd = None
            if workdir:
                shutil.rmtree(workdir, ignore_errors=True)
            self.shell_down()

    def controller_stopped(self, run, t0, lease, step, started):
        """After the controller was killed at ``t0``: problems when the detached job outlived the timeout and its
        margin, ``lease`` (a host path) is still there, or no cancel state for ``step`` was written after
        ``started`` (wall clock). Return (problems, seconds the job took to stop)."""
        problems = []
        limit = CONTROLLER_TIMEOUT + CONTROLLER_MARGIN
        while (harness.marked_alive(run) or os.path.lexists(lease)) and time.monotonic() - t0 < limit:
            time.sleep(0.2)
        left = harness.marked_alive(run)
        stopped_after = time.monotonic() - t0
        if left:
            problems.append('the detached job still ran %d s after the controller was killed (controller_timeout %d s): %s'
                            % (limit, CONTROLLER_TIMEOUT, one_line(' | '.join(harness.cmdlines(left).values()), 400)))
            harness.kill_tree(run)
        if os.path.lexists(lease):
            holder = read_json(lease) or {}
            problems.append('the lease %s is still there %.0f s after the kill (last renewed %.0f s before the check)'
                            % (lease, time.monotonic() - t0, time.time() - float(holder.get('renewed', 0))))
        state = read_json(os.path.join(self.storage(), CANCEL_STATE)) or {}
        if state.get('result') != 'cancelled' or state.get('step') != step or float(state.get('stopped_ts') or 0) < started:
            problems.append('no cancel state for the %s step written by this run: %s' % (step, one_line(state, 300)))
        return problems, stopped_after

    def controller_copy(self, case, password, workdir):
        """The controller killed while the off-host copy runs (slowed by an ssh that sleeps before it carries the
        archive): the copy stops, its lease and key go, nothing lands under a final name there, the next run copies."""
        from backup_host import SSHD, BackupHost  # pylint: disable=import-outside-toplevel
        if not os.access(SSHD, os.X_OK):
            self.skip('controller', case, 'no OpenSSH server (%s; make deps installs openssh-server)' % SSHD)
            return
        self.sshd = BackupHost(workdir)
        storage = self.storage()
        far = self.sshd.host_dir('faults-controller')
        with open(self.sshd.user_key) as f:
            key = f.read().strip().splitlines()[-2]  # a line of its private part (the first lines are alike in every key)
        slow = os.path.join(workdir, 'slow-ssh')
        os.makedirs(slow)
        with open(os.path.join(slow, 'ssh'), 'w') as f:
            f.write('#!/bin/sh\ncase "$*" in *"cat > "*) /bin/sleep %s ;; esac\nexec %s "$@"\n'
                    % (COPY_SLEEP, shutil.which('ssh')))
        os.chmod(os.path.join(slow, 'ssh'), 0o755)
        variables = self.copy_vars(alation_backup_controller_timeout=CONTROLLER_TIMEOUT, alation_backup_pg_password=password,
                                   alation_backup_copy_host_dir='faults-controller', alation_backup_copy_method='stream')
        started = time.time()
        run = Run(case, variables, env=dict(PATH=slow + ':' + os.environ['PATH']))
        problems = []
        try:
            deadline = time.monotonic() + 300
            sleeping = []
            while not sleeping and run.proc.poll() is None and time.monotonic() < deadline:
                sleeping = [p for p, c in harness.cmdlines(harness.marked_alive(run)).items() if '/bin/sleep ' + COPY_SLEEP in c]
                time.sleep(0.2)
            if not sleeping:
                run.wait()
                self.record('controller', case, False, 'the copy never started (its slow ssh never ran): %s' % run.error())
                return
            time.sleep(2)
            in_task = run.current_task()
            during = harness.grep_files(SECRET_DIRS[:2], key)
            killed, detached = harness.kill_controller(run)
            t0 = time.monotonic()
            if not harness.job_pids(detached):
                problems.append('harness: no detached async job after the controller was killed in %r (left: %s)'
                                % (in_task, detached))
            if during:
                problems.append("during the copy a line of the copy's private key is on disk in: %s" % ', '.join(during[:5]))
            more, stopped_after = self.controller_stopped(run, t0, os.path.join(storage, harness.LEASE), 'copy', started)
            problems += more
            after = harness.grep_files(SECRET_DIRS, key) + harness.grep_files(SECRET_DIRS, password)
            if after:
                problems.append('after the copy stopped its key or the password is on disk in: %s' % ', '.join(after[:5]))
            finals = [n for n in harness.dir_entries(far) if n.endswith('.tar.gz')]
            if finals:
                problems.append('the cancelled copy left files under a final name there: %s' % finals)
            if self.lease_left():
                self.wait_until_stale()
            harness.age_archives(storage)
            nxt = Run(case + '-next', dict(variables, alation_backup_copy_method='auto')).wait()
            copy = nxt.record.get('copy') or {}
            if not nxt.ok() or copy.get('result') != 'ok':
                problems.append('the next run, started at once, or its copy failed: %s / %s'
                                % (nxt.error(), one_line(copy.get('error') or copy, 300)))
            elif nxt.record.get('lock_taken_over'):
                problems.append('the next run had to take the lease over: %s' % nxt.record.get('lock_taken_over'))
            if self.far_hidden(far):
                problems.append("the killed copy's temp files are still there after the next run: %s" % self.far_hidden(far))
            problems += harness.storage_problems(storage)
            harness.age_archives(storage)
            harness.prune_archives(storage, keep=2)
            self.record('controller', case, not problems, '; '.join(problems) or
                        'controller killed in %r (%d processes); the copy stopped %.1f s later, its key gone; the next '
                        'run started at once and copied' % (in_task, len(killed), stopped_after))
        finally:
            if run.proc.poll() is None or harness.marked_alive(run):
                harness.kill_tree(run)

    def controller_drill(self, case, step, password):
        """The controller killed during the restore drill's unpacking or rebuild (its programs held): the step stops
        within alation_restore_controller_timeout and a margin, the scratch dir's lock goes, the next drill passes."""
        # A fresh archive with a site file of random bytes: its unpacking takes long enough to be caught.
        self.baseline(case + '-baseline', alation_backup_pg_password=password, alation_backup_extra_paths=[self.site_file(48)])
        lock = self.host.path(RESTORE_LOCK)
        variables = restoring.restore_vars(self.host.role_vars, alation_restore_controller_timeout=CONTROLLER_TIMEOUT)
        started = time.time()
        run = Run(case, variables, book='verify_backup.yml')
        throttle = None
        problems = []
        try:
            if not run.wait_for_task(re.escape(DRILL_TASK[step]), timeout=300):
                run.wait()
                self.record('controller', case, False, 'the drill never reached its %s step: %s' % (step, run.error()))
                return
            deadline = time.monotonic() + 60
            throttle = harness.Throttle(run, DRILL_PROGRAMS[step], run_s=0.003, stop_s=0.997)
            while not throttle.pids() and run.proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            if not throttle.pids():
                run.wait()
                self.record('controller', case, False, 'harness: none of %s ran in the %s step (%s)' % (
                    ', '.join(DRILL_PROGRAMS[step]), step, run.error() if run.rc is not None else 'still running'))
                return
            throttle.start()
            time.sleep(2)
            in_task = run.current_task()
            killed, detached = harness.kill_controller(run)
            t0 = time.monotonic()
            if not harness.job_pids(detached):
                problems.append('harness: no detached async job after the controller was killed in %r (left: %s)'
                                % (in_task, detached))
            more, stopped_after = self.controller_stopped(run, t0, lock, step, started)
            throttle.stop()
            throttle = None
            problems += more
            if os.path.lexists(lock):
                os.unlink(lock)
            nxt = restoring.run_restore_playbook('verify_backup.yml', restoring.restore_vars(self.host.role_vars))
            rec = nxt.records.get('alation-test-host', {}) if nxt.rc is not None else {}
            if nxt.rc != 0 or rec.get('result') != 'ok':
                problems.append('the next drill, started at once, failed (rc %s): %s'
                                % (nxt.rc, one_line(rec.get('error') or nxt.output[-1500:])))
            self.record('controller', case, not problems, '; '.join(problems) or
                        'controller killed in %r (%d processes); the %s step stopped %.1f s later; the next drill '
                        'started at once and passed' % (in_task, len(killed), step, stopped_after))
        finally:
            if throttle:
                throttle.stop()
            if run.proc.poll() is None or harness.marked_alive(run):
                harness.kill_tree(run)

    def controller_case(self, case, step, password, site):
        storage = self.storage()
        variables = self.vars(alation_backup_controller_timeout=CONTROLLER_TIMEOUT, alation_backup_pg_password=password,
                              alation_backup_extra_paths=[site], alation_backup_compressor='pigz')
        run = Run(case, variables)
        throttle = None
        problems = []
        try:
            if not run.wait_for_task(re.escape(STEP_TASK[step]), timeout=300):
                run.wait()
                self.record('controller', case, False, 'the run never reached its %s step: %s' % (step, run.error()))
                return
            # The step's programs slowed down (SIGSTOP/SIGCONT), so that it outlasts the controller timeout.
            deadline = time.monotonic() + 60
            names, run_s, stop_s = STEP_PROGRAMS[step]
            throttle = harness.Throttle(run, names, run_s=run_s, stop_s=stop_s)
            while not throttle.pids() and run.proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            if not throttle.pids():
                run.wait()
                self.record('controller', case, False, 'harness: none of %s ran in the %s step (%s)' % (
                    ', '.join(names), step, run.error() if run.rc is not None else 'still running'))
                return
            throttle.start()
            time.sleep(2)
            in_task = run.current_task()
            killed, detached = harness.kill_controller(run)
            t0 = time.monotonic()
            if not harness.job_pids(detached):
                problems.append('harness: no detached async job after the controller was killed in %r (left: %s)'
                                % (in_task, detached))
            during = harness.grep_files(SECRET_DIRS, password)
            if during:
                problems.append('during the %s step, with the job running, the password is on disk in: %s'
                                % (step, ', '.join(during[:5])))
            limit = CONTROLLER_TIMEOUT + CONTROLLER_MARGIN
            while harness.marked_alive(run) and time.monotonic() - t0 < limit:
                time.sleep(0.2)
            left = harness.marked_alive(run)
            stopped_after = time.monotonic() - t0
            throttle.stop()
            throttle = None
            if left:
                problems.append('the detached job still ran %d s after the controller was killed (controller_timeout %d s): %s'
                                % (limit, CONTROLLER_TIMEOUT, one_line(' | '.join(harness.cmdlines(left).values()), 400)))
                harness.kill_tree(run)
            if self.lease_left():
                holder = read_json(os.path.join(storage, harness.LEASE)) or {}
                problems.append('the lease is still there %.0f s after the kill (last renewed %.0f s before the check)'
                                % (time.monotonic() - t0, time.time() - float(holder.get('renewed', 0))))
            after = harness.grep_files(SECRET_DIRS, password)
            if after:
                problems.append('after the job stopped the password is on disk in: %s' % ', '.join(after[:5]))
                # The suite's throwaway password, but not left on this machine: the payload dirs that hold it go.
                for path in after:
                    m = re.match(r'^(/root/\.ansible/tmp/ansible-tmp-[^/]+)/', path)
                    if m:
                        shutil.rmtree(m.group(1), ignore_errors=True)
            nxt = Run(case + '-next', dict(variables, alation_backup_extra_paths=[])).wait()
            if not nxt.ok():
                problems.append('the next run, started at once, failed: %s' % nxt.error())
            problems += harness.storage_problems(storage)
            if harness.temp_files(storage):
                problems.append('temporary files left after the next run: %s' % harness.temp_files(storage))
            if self.lease_left():
                self.wait_until_stale()
                os.unlink(os.path.join(storage, harness.LEASE))
            harness.age_archives(storage)
            harness.prune_archives(storage, keep=2)
            self.record('controller', case, not problems, '; '.join(problems) or
                        'controller killed in %r (%d processes); the host job stopped %.1f s later; the next run '
                        'started at once and succeeded' % (in_task, len(killed), stopped_after))
        finally:
            if throttle:
                throttle.stop()
            if run.proc.poll() is None or harness.marked_alive(run):
                harness.kill_tree(run)

    # -- the far side ----------------------------------------------------------------------

    def kind_farside(self):
        from backup_host import SSHD, BackupHost  # pylint: disable=import-outside-toplevel
        cases = [('far-side-full-retention-first', self.farside_full), ('far-side-full-fails-naming-bytes', self.farside_full),
                 ('copy-killed-mid-way', self.farside_killed), ('two-hosts-one-host-dir', self.farside_twin)]
        if self.sample:
            cases = [self.rng.choice(cases)]
        cases = [(c, fn) for c, fn in cases if self.wanted(c)]
        if not os.access(SSHD, os.X_OK):
            for case, dummy in cases:
                self.skip('farside', case, 'no OpenSSH server (%s; make deps installs openssh-server)' % SSHD)
            return
        self.shell_up()
        workdir = tempfile.mkdtemp(prefix='faults-backup-host-')
        sshd = None
        try:
            sshd = BackupHost(workdir)
            self.sshd = sshd
            if any(fn != self.farside_killed for dummy, fn in cases):
                # One archive of this shell, of the size the cases' runs make (pg_basebackup, no site file).
                self.baseline('farside-baseline', 'pg_basebackup', alation_backup_incremental=False)
                self.far_good = restoring.copy_archive(os.path.join(self.storage(), harness.archives(self.storage())[-1]),
                                                       tempfile.mkdtemp(prefix='faults-far-good-'))
            for case, fn in cases:
                fn(case)
        finally:
            if sshd:
                harness.unmount_below(sshd.dir)
                sshd.stop()
            shutil.rmtree(workdir, ignore_errors=True)
            self.shell_down()

    def copy_vars(self, **extra):
        sshd = self.sshd
        return self.vars('pg_basebackup', alation_backup_incremental=False, alation_backup_copy_to=sshd.dest(),
                         alation_backup_copy_ssh_key=sshd.user_key, alation_backup_copy_known_hosts=sshd.known_hosts,
                         **extra)

    def far_hidden(self, far):
        """Hidden files in the per-host dir other than owner markers: a copy's temp files."""
        return sorted(n for n in harness.dir_entries(far) if n.startswith('.')
                      and n not in (harness.FAR_OWNER_MARKER, harness.OWNER_MARKER))

    def farside_full(self, case):
        sshd = self.sshd
        fits = case.endswith('retention-first')
        host_dir = 'faults-full-%s' % ('fits' if fits else 'fails')
        far = sshd.host_dir(host_dir)
        size = os.path.getsize(self.far_good)
        # Three older copies there and room for half an archive: with keep_count 3 (the new one counted), far-side
        # retention frees one and the copy fits; with keep_count 10 nothing may go and the copy cannot fit.
        with harness.tmpfs(far, '%dk' % ((size * 7 // 2 + 64 * 1024) // 1024), sshd.uid, sshd.uid, 0o700):
            older = [harness.plant_archive(self.far_good, far, '2026010%d0101' % day) for day in (1, 2, 3)]
            for name in older:
                for n in (name, name + '.sha256'):
                    os.chown(os.path.join(far, n), sshd.uid, sshd.uid)
            free = shutil.disk_usage(far).free
            r = self.run(case, self.copy_vars(alation_backup_keep_count=3 if fits else 10, alation_backup_copy_host_dir=host_dir))
            copy = r.record.get('copy') or {}
            problems = [] if r.record.get('result') == 'ok' else ['the run failed: %s' % r.error()]
            if fits:
                if copy.get('result') != 'ok':
                    problems.append('the copy did not fit after far-side retention (%d bytes free before, archive %d '
                                    'bytes): %s' % (free, size, one_line(copy.get('error') or copy, 500)))
                else:
                    removed = [os.path.basename(p) for p in (copy.get('retention') or {}).get('removed', [])]
                    if older[0] not in removed:
                        problems.append('far-side retention did not remove the oldest %s: removed %s' % (older[0], removed))
                    own = os.path.basename(r.record.get('archive') or '')
                    if own not in harness.dir_entries(far):
                        problems.append('the copy %s is not on the far side: %s' % (own, harness.dir_entries(far)))
            else:
                err = copy.get('error') or ''
                m = re.search(r'(\d+) bytes.*free.*?(\d+) bytes.*needed', err)
                if copy.get('result') != 'failed':
                    problems.append('the copy into a full far side did not fail: %s' % copy)
                elif not m:
                    problems.append('the failed copy does not name the free and needed bytes: %s' % one_line(err, 500))
                for name in older:
                    if name not in harness.dir_entries(far):
                        problems.append('the older %s went though retention there could not make room' % name)
            if self.far_hidden(far):
                problems.append('temp files left on the far side: %s' % self.far_hidden(far))
        self.clean_after(r)
        self.record('farside', case, not problems, '; '.join(problems) or
                    ('copied after far-side retention removed %s' % older[0] if fits
                     else 'failed as it should: %s' % one_line(copy.get('error'), 300)))

    def farside_killed(self, case):
        sshd = self.sshd
        far = sshd.host_dir('faults-killed')
        site = self.site_file(24)
        variables = self.copy_vars(alation_backup_copy_host_dir='faults-killed', alation_backup_copy_method='stream',
                                   alation_backup_extra_paths=[site])
        run = Run(case, variables)
        throttle = None
        tmp = []
        try:
            if not run.wait_for_task(re.escape('Copy |'), timeout=300):
                run.wait()
                self.record('farside', case, False, 'the run never reached its copy: %s' % run.error())
                return
            throttle = harness.Throttle(run, ('ssh',), run_s=0.1, stop_s=0.4).start()
            deadline = time.monotonic() + 120
            while not tmp and run.proc.poll() is None and time.monotonic() < deadline:
                tmp = [n for n in self.far_hidden(far) if n.endswith('.tmp')]
                time.sleep(0.02)
            time.sleep(0.3)
            throttle.stop()
            throttle = None
            killed = harness.kill_tree(run)
        finally:
            if throttle:
                throttle.stop()
        if not tmp:
            run.wait()
            self.record('farside', case, False, 'harness: no temp file appeared on the far side before the copy ended (%s)'
                        % (run.error() if run.rc else 'run ok'))
            return
        left = self.far_hidden(far)
        if not left:
            self.record('farside', case, False, 'harness: the killed copy left no temp file on the far side (nothing to test)')
            return
        self.wait_until_stale()
        nxt = self.run(case + '-next', dict(variables, alation_backup_extra_paths=[]))
        copy = nxt.record.get('copy') or {}
        problems = [] if nxt.ok() and copy.get('result') == 'ok' else [
            'the next run or its copy failed: %s / %s' % (nxt.error(), one_line(copy.get('error') or copy, 300))]
        still = [n for n in self.far_hidden(far) if n in left]
        if still:
            problems.append("the killed copy's temp file is still on the far side after the next run: %s" % still)
        self.clean_after(nxt)
        harness.prune_archives(self.storage(), keep=2)
        self.record('farside', case, not problems, '; '.join(problems) or
                    'killed during the copy (%d processes), %s left there; the next run removed it' % (len(killed), left))

    def farside_twin(self, case):
        sshd = self.sshd
        host_dir = 'faults-twin'
        far = sshd.host_dir(host_dir)
        os.makedirs(far, exist_ok=True)
        os.chown(far, sshd.uid, sshd.uid)
        os.chmod(far, 0o700)
        twins = [harness.plant_archive(self.far_good, far, '2026020%d0101' % day) for day in (1, 2)]
        marker = harness.write_far_owner_marker(far, TWIN_HOST, sshd.uid, sshd.uid)
        for name in twins:
            for n in (name, name + '.sha256'):
                os.chown(os.path.join(far, n), sshd.uid, sshd.uid)
        before = harness.tree_state(far)
        r = self.run(case, self.copy_vars(alation_backup_copy_host_dir=host_dir, alation_backup_keep_count=1))
        copy = r.record.get('copy') or {}
        problems = []
        if copy.get('result') != 'failed':
            problems.append("the copy into a per-host dir another machine owns (%s) was not refused: %s" % (
                TWIN_HOST, one_line({k: copy.get(k) for k in ('result', 'dest', 'error', 'retention')}, 400)))
        elif TWIN_HOST not in (copy.get('error') or ''):
            problems.append('the copy was refused without naming %s: %s' % (TWIN_HOST, one_line(copy.get('error'), 400)))
        problems += harness.tree_changes(far, before)
        self.clean_after(r)
        harness.prune_archives(self.storage(), keep=2)
        self.record('farside', case, not problems, '; '.join(problems) or
                    'refused, the twin\'s dir untouched (%s): %s' % (os.path.basename(marker), one_line(copy.get('error'), 300)))
