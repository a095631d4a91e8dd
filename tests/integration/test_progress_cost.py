# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Progress that costs little: wait_progress against a real async job (async_wrapper writing its status file,
step_progress waiting on it), on the newest ansible-core and on the oldest with the oldest host Python.

A step that ends before its first progress line costs one call on the host, and its end is seen at once (the
look waits on the host and watches the job's status file); a longer one costs a call a line, its lines as before.
A look whose controller dies ends at once and leaves the poll mark no more.
"""

import datetime
import json
import os
import re
import signal
import subprocess
import time

import pytest

import playbook
from playbook import HOST, run_playbook
from test_controller_gone import cmdline, descendants, kill_controller, processes, wait_until
from test_oldest_hosts import ANSIBLE_216, pyenv_python

PLAY = r'''
- name: Two background steps and their waits
  hosts: alation
  gather_facts: false
  tasks:
    - name: A step of 4 s
      ansible.builtin.command: sleep 4
      async: 60
      poll: 0
      register: short_job

    - name: Wait for it (a line every 30 s)
      alation.backup.wait_progress:
        job: "{{ short_job }}"
        label: short
      register: short

    - name: When the wait saw it end
      ansible.builtin.set_fact:
        short_seen: "{{ lookup('pipe', 'date +%s.%N') }}"

    - name: A step that writes 1 MiB a second for 7 s
      ansible.builtin.command:
        argv: [sh, -c, 'for i in 1 2 3 4 5 6 7; do head -c 1048576 /dev/zero >> "$0/f"; sleep 1; done', "{{ grow_dir }}"]
      async: 60
      poll: 0
      register: grow_job

    - name: Wait for it, a line every 2 s
      alation.backup.wait_progress:
        job: "{{ grow_job }}"
        label: grow
        interval: 2
        watch: ["{{ grow_dir }}"]
        controller_mark: "{{ grow_dir }}/poll"
        controller_timeout: 60
      register: grow

    - name: Keep what the test reads
      ansible.builtin.copy:
        content: "{{ {'short': short, 'short_seen': short_seen, 'grow': grow} | to_json }}"
        dest: "{{ out }}"
        mode: '0600'
'''


def controllers():
    python36 = pyenv_python('3.6')
    marks = []
    if not os.access(ANSIBLE_216, os.X_OK) or not python36:
        marks = [pytest.mark.skip(reason='ansible-core 2.16 (.venv-ansible-2.16) or pyenv Python 3.6 missing')]
    return [pytest.param({}, id='newest'),
            pytest.param(dict(ansible_playbook=ANSIBLE_216, interpreter=python36), id='ansible-2.16-python-3.6',
                         marks=marks)]


def seconds(delta):
    """``'0:00:07.012345'`` (the command module's delta) -> seconds."""
    h, m, s = delta.split(':')
    return int(h) * 3600 + int(m) * 60 + float(s)


@pytest.mark.parametrize('controller', controllers())
def test_a_short_step_costs_one_look_and_a_long_one_a_look_a_line(controller, scratch):
    play, out, grow_dir = (os.path.join(scratch, n) for n in ('play.yml', 'out.json', 'grow'))
    os.makedirs(grow_dir)
    with open(play, 'w') as f:
        f.write(PLAY)
    with open(os.path.join(grow_dir, 'poll'), 'w') as f:
        f.write('')  # the step's poll mark, as its module makes it
    run = run_playbook(play, dict(out=out, grow_dir=grow_dir), workdir=scratch, **controller)
    print(run.output)
    assert run.rc == 0, run.output
    with open(out) as f:
        found = json.load(f)

    short, grow = found['short'], found['grow']
    # The command module's end, in the host's local time (the host is this machine).
    ended = time.mktime(datetime.datetime.strptime(short['end'], '%Y-%m-%d %H:%M:%S.%f').timetuple()) + \
        int(short['end'].rsplit('.', 1)[1]) / 1e6
    took = seconds(grow['delta'])
    lines = re.findall(r'^%s: grow [\d.]+ (?:B|KiB|MiB), [\d.]+ (?:B|KiB|MiB)/s$' % HOST, run.output, re.M)
    # The time from the step's end to the next task is the look's 0.2 s plus what the machine takes to run the
    # module, async_wrapper and a task: printed, not asserted (other tests load this machine).
    print('short step: %d look(s), the next task %.2fs after its end; %.1fs step: %d looks, %d lines'
          % (short['progress']['polls'], float(found['short_seen']) - ended, took, grow['progress']['polls'], len(lines)))

    assert short['rc'] == 0 and short['cmd'] == ['sleep', '4']
    # Before: looks after 0, 1, 3, 7 s (four calls), the end seen up to 4 s late.
    assert short['progress']['polls'] == 1, short
    # A look to each line (every 2 s) and one that sees the end; the first also measured the baseline.
    assert grow['progress']['polls'] <= took // 2 + 2, (grow['progress'], took)
    # Lines as they were (how many depends on the machine's load: a look is late when the module is slow to start).
    assert lines, run.output
    assert os.path.getsize(os.path.join(grow_dir, 'poll')) > 0, 'the looks left the poll mark'


LONG_PLAY = r'''
- name: A long background step and its wait
  hosts: alation
  gather_facts: false
  tasks:
    - name: A step of 47.5 s
      ansible.builtin.command: sleep 47.5
      async: 120
      poll: 0
      register: long_job

    - name: Wait for it
      alation.backup.wait_progress:
        job: "{{ long_job }}"
        label: long
        controller_mark: "{{ mark }}"
        controller_timeout: 180
'''
LOOK = 'AnsiballZ_step_progress'


def test_a_look_whose_controller_dies_ends_at_once_and_leaves_the_mark_no_more(scratch):
    play, mark = os.path.join(scratch, 'play.yml'), os.path.join(scratch, 'lock.poll')
    with open(play, 'w') as f:
        f.write(LONG_PLAY)
    with open(mark, 'w') as f:
        f.write('')  # the step's poll mark, as its module makes it
    argv, env, dummy = playbook._argv_env(play, dict(mark=mark), workdir=scratch)  # pylint: disable=protected-access
    with open(os.path.join(scratch, 'output.txt'), 'w') as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    job = []

    def looks():  # this run's (other tests on the machine may look at their own steps)
        return [p for p in looking if LOOK in cmdline(p)]

    try:
        assert wait_until(lambda: [p for p in descendants(proc.pid) if LOOK in cmdline(p)], 120), 'no look started'
        looking = [p for p in descendants(proc.pid) if LOOK in cmdline(p)]
        job = [p for p in processes('sleep 47.5') if '/bin/sh' not in cmdline(p)]
        time.sleep(3)  # into the look's 30 s
        with open(mark) as f:
            left = f.read()
        assert left, 'the look left the mark when it started'
        killed = time.monotonic()
        kill_controller(proc.pid, LOOK)
        proc.wait(timeout=30)
        # Nobody reads the look's output any more: it ends at the next look at the job file, not 27 s later.
        assert wait_until(lambda: not looks(), 10), 'the look still waits %.0fs after its controller died' % (
            time.monotonic() - killed)
        took = time.monotonic() - killed
        with open(mark) as f:
            assert f.read() == left, 'the look left the mark after its controller died'
        print('the look ended %.1fs after its controller died, the mark left as it was' % took)
    finally:
        if proc.poll() is None:
            kill_controller(proc.pid)
        for pid in job:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
