# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One ansible-playbook run for the benchmarks, and what the controller did for it.

run_bench.py and fleet_bench.py both run the playbook through ``play()``:

- the bench_events callback (bench/callback_plugins) writes every task entry per host;
- each host's ``ansible_python_interpreter`` is a small generated bash script that runs the
  real Python with the same argv and stdin, then notes its own and its children's CPU (bash's
  ``times``, from getrusage) in a directory of that host. With ``ansible_connection=local`` the
  modules are children of the workers, so the controller's RUSAGE_CHILDREN holds their CPU:
  the notes let it be taken out again. A note also says where the module ran: under the
  controller (``sync``: reaped by it, in its rusage) or under an async job's daemon (``async``:
  reparented away from the controller, never in its rusage, so never subtracted);
- the controller's CPU is user + system of ansible-playbook and every descendant it reaped
  (workers, and through them the sync modules): the bench process' RUSAGE_CHILDREN across the run;
- the machine's busy CPU time across the run (/proc/stat, every process: the controller, the hosts'
  jobs, their PostgreSQL servers, anything else running), and from it the least wall the run's work
  could take on this machine's CPUs: when the hosts share the controller's CPUs (a fleet on one
  machine), a run at that floor was paced by the CPUs, not by Ansible.

Nothing here reads the play layout: only the callback's file, the CPU notes and the report JSON.
"""

import collections
import json
import os
import re
import resource
import shlex
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, 'tests', 'support'))

from playbook import local_host, start_playbook  # noqa: E402

CALLBACKS = os.path.join(HERE, 'callback_plugins')
# Actions that run on the controller only (no module on the host): what the issue calls controller-only tasks.
CONTROLLER_ONLY = frozenset(('set_fact', 'debug', 'fail', 'assert', 'set_stats', 'meta', 'include_tasks', 'import_tasks',
                             'include_role', 'import_role', 'include_vars', 'add_host', 'group_by', 'pause',
                             'validate_argument_spec'))
KINDS = ('ok', 'changed', 'skipped', 'failed', 'unreachable', 'include')

# The interpreter wrapper. The walk up the parents tells a module the controller waits for (the bench
# process is its ancestor) from an async job's (its daemon was reparented away).
WRAPPER = r'''#!/bin/bash
# bench/playrun.py: the real Python, then this process' and its children's CPU in {notes}/<pid>.
{python} "$@"
rc=$?
where=async
p=$PPID
while [ "$p" -gt 1 ]; do
  if [ "$p" = {bench_pid} ]; then where=sync; break; fi
  read -r stat < /proc/$p/stat || break
  stat=${{stat##*) }}
  set -- $stat
  p=$2
done
{{ echo "$where $rc"; times; }} >> {notes}/$$
exit $rc
'''
_TIME = re.compile(r'(\d+)m([\d.]+)s')


def write_wrapper(path, notes, python=sys.executable, bench_pid=None):
    """Write the interpreter wrapper at ``path``, its CPU notes going to the directory ``notes``."""
    os.makedirs(notes, exist_ok=True)
    with open(path, 'w') as f:
        f.write(WRAPPER.format(python=shlex.quote(python), notes=shlex.quote(notes),
                               bench_pid=bench_pid or os.getpid()))
    os.chmod(path, 0o755)
    return path


def _seconds(text):
    return sum(int(m) * 60 + float(s) for m, s in _TIME.findall(text))


def parse_notes(text):
    """The wrapper's notes (blocks of 'where rc', own times, children's times): [(where, cpu s)]."""
    lines = [line for line in text.splitlines() if line.strip()]
    out = []
    for i in range(0, len(lines) - 2, 3):
        out.append((lines[i].split()[0], _seconds(lines[i + 1]) + _seconds(lines[i + 2])))
    return out


def module_cpu(notes):
    """One host's notes directory: dict(sync=s, sync_calls=n, async=s, async_calls=n)."""
    out = dict(sync=0.0, sync_calls=0, async_cpu=0.0, async_calls=0)
    for name in sorted(os.listdir(notes)) if os.path.isdir(notes) else ():
        with open(os.path.join(notes, name)) as f:
            for where, cpu in parse_notes(f.read()):
                if where == 'sync':
                    out['sync'] += cpu
                    out['sync_calls'] += 1
                else:
                    out['async_cpu'] += cpu
                    out['async_calls'] += 1
    return out


def _action(entry):
    action = entry.get('action') or ''
    for prefix in ('ansible.builtin.', 'ansible.legacy.'):
        if action.startswith(prefix):
            return action[len(prefix):]
    return action


def entries_per_host(events, hosts):
    """Each host's task entries, in time order: {host: [entry]}.

    An entry is what the callback wrote: a task's result on a host, or an included file for a host.
    A task that ran for the run rather than for a host (``run_once``, or on a host outside ``hosts``
    such as the controller's localhost) is counted for every host: that host's own entries of it
    when it has some, else those of the host with the most (so each host shows the worst case).
    """
    own = collections.OrderedDict((h, []) for h in hosts)
    shared = collections.OrderedDict()
    for e in events:
        if e.get('run_once') or e.get('host') not in own:
            shared.setdefault(e.get('uuid') or e.get('task'), collections.OrderedDict()).setdefault(
                e.get('host'), []).append(e)
        else:
            own[e['host']].append(e)
    out = {}
    for host, entries in own.items():
        entries = list(entries)
        for by_host in shared.values():
            entries.extend(by_host.get(host) or max(by_host.values(), key=len))
        out[host] = sorted(entries, key=lambda e: e.get('t', 0))
    return out


def tally(entries):
    """Counts of a host's entries: total, each kind (changed counted within ok), module calls, controller-only."""
    c = collections.Counter(total=len(entries))
    for e in entries:
        c[e['kind']] += 1
        if e['kind'] == 'ok' and e.get('changed'):
            c['changed'] += 1
        if e['kind'] in ('ok', 'failed'):
            c['controller_only' if _action(e) in CONTROLLER_ONLY else 'module_calls'] += 1
    return c


def tally_text(c):
    return ('%d = %d ok (%d changed), %d skipped, %d failed, %d include%s; of the ok/failed: %d module calls, '
            '%d controller-only' % (c['total'], c['ok'], c['changed'], c['skipped'], c['failed'], c['include'],
                                    (', %d unreachable' % c['unreachable']) if c['unreachable'] else '',
                                    c['module_calls'], c['controller_only']))


def entry_lines(entries):
    """A host's entries, one line each: kind, action, task name."""
    return ['%-8s %-40s %s' % (e['kind'] + ('*' if e.get('changed') else ''), e.get('action') or '', e.get('task'))
            for e in entries]


def cpu_split(controller_rusage, modules, hosts):
    """The controller's CPU per host, less the modules it reaped.

    ``controller_rusage``: user + system s of ansible-playbook and what it reaped; ``modules``: {host:
    module_cpu()}. Returns dict(per_host, modules_per_host, async_per_host, total, modules, share).
    """
    n = max(len(hosts), 1)
    sync = sum(modules.get(h, {}).get('sync', 0.0) for h in hosts)
    async_cpu = sum(modules.get(h, {}).get('async_cpu', 0.0) for h in hosts)
    controller = controller_rusage - sync
    return dict(total=controller_rusage, controller=controller, modules=sync, per_host=controller / n,
                modules_per_host=sync / n, async_per_host=async_cpu / n,
                calls_per_host=sum(modules.get(h, {}).get('sync_calls', 0) for h in hosts) / n,
                share=(controller / controller_rusage) if controller_rusage else 0.0)


def cpu_text(split, hosts):
    return ['controller CPU per host: %.2f s  (ansible-playbook and its workers: user+sys %.2f s over %d host(s), '
            'less the modules\' %.2f s)' % (split['per_host'], split['total'], len(hosts), split['modules']),
            "modules' CPU per host: %.2f s in %.1f calls under the controller (subtracted); %.2f s in async jobs "
            "(daemonized: never in the controller's rusage)"
            % (split['modules_per_host'], split['calls_per_host'], split['async_per_host']),
            "split of the controller's rusage: controller %.0f%%, modules %.0f%%"
            % (100 * split['share'], 100 * (1 - split['share']) if split['total'] else 0)]


def busy_cpu_seconds():
    """CPU seconds the machine has spent busy (all CPUs, every process) since boot: /proc/stat's first line."""
    with open('/proc/stat') as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    # guest and guest_nice are already in user and nice
    return (sum(fields[:8]) - idle) / float(os.sysconf('SC_CLK_TCK'))


def busy_text(busy, wall, cpus):
    """The machine's load across a run, and the least wall its work needs on ``cpus`` CPUs."""
    share = 100 * busy / (cpus * wall or 1)
    return ("the machine's CPUs across the run: %.1f CPU s busy of %.1f (%d CPUs x %.1f s wall, %.0f%%); "
            'the same work needs at least %.1f s of wall on %d CPUs'
            % (busy, cpus * wall, cpus, wall, share, busy / cpus, cpus))


class Play(object):
    """A finished run: wall s, rc, output, records by host, events, entries and CPU."""

    def __init__(self, hosts, wall, rc, output, records, events, rusage, modules, busy=0.0):
        self.hosts = list(hosts)
        self.wall = wall
        self.busy = busy
        self.cpus = os.cpu_count() or 1
        self.floor = busy / self.cpus
        self.rc = rc
        self.output = output
        self.records = records
        self.events = events
        self.entries = entries_per_host(events.get('entries', []), self.hosts)
        self.tallies = {h: tally(e) for h, e in self.entries.items()}
        self.cpu = cpu_split(rusage, modules, self.hosts)
        self.modules = modules

    def entries_text(self):
        """One line when every host has the same counts, else a line per distinct count (with its hosts)."""
        groups = collections.OrderedDict()
        for host in self.hosts:
            groups.setdefault(tally_text(self.tallies[host]), []).append(host)
        head = 'task entries per host (from the bench_events callback; run_once tasks counted for every host): '
        if len(groups) == 1:
            return [head + next(iter(groups))]
        return [head] + ['  %s  [%s]' % (text, ', '.join(hosts) if len(hosts) < 4 else '%d hosts' % len(hosts))
                         for text, hosts in groups.items()]

    def report(self):
        return self.entries_text() + cpu_text(self.cpu, self.hosts)


def play(workdir, hosts, forks=None, extra_vars=None, playbook='backup.yml', timeout=3600, log=None):
    """Run ``playbook`` over ``hosts`` ({name: inventory vars}) with the callback and the CPU wrappers."""
    os.makedirs(workdir, exist_ok=True)
    inventory = {}
    modules_dirs = {}
    for name, hostvars in hosts.items():
        notes = os.path.join(workdir, 'cpu', name)
        modules_dirs[name] = notes
        hostvars = dict(hostvars)
        python = hostvars.pop('ansible_python_interpreter', None) or sys.executable
        inventory[name] = local_host(write_wrapper(os.path.join(workdir, 'python-' + name), notes, python), **hostvars)
    events_path = os.path.join(workdir, 'events.json')
    env = dict(ANSIBLE_CALLBACK_PLUGINS=CALLBACKS, ANSIBLE_CALLBACKS_ENABLED='bench_events',
               ALATION_BENCH_EVENTS=events_path)
    if forks:
        env['ANSIBLE_FORKS'] = str(forks)
    if log:
        log('ansible-playbook %s over %d host(s)%s' % (playbook, len(hosts), (', -f %d' % forks) if forks else ''))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy0 = busy_cpu_seconds()
    t0 = time.perf_counter()
    run = start_playbook(playbook, dict(extra_vars or {}), workdir=workdir, hosts=inventory, env=env).wait(timeout)
    wall = time.perf_counter() - t0
    busy = busy_cpu_seconds() - busy0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    rusage = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    with open(os.path.join(workdir, 'output.txt'), 'w') as f:
        f.write(run.output)
    records = {}
    if os.path.exists(run.report_path):
        records = run.records
    events = {}
    if os.path.exists(events_path):
        with open(events_path) as f:
            events = json.load(f)
    return Play(hosts, wall, run.rc, run.output, records, events, rusage,
                {name: module_cpu(d) for name, d in modules_dirs.items()}, busy)
