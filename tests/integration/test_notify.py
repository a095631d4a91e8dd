# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A word when it fails, through the role in a real Alation shell: a run that fails (PostgreSQL on a port where
nothing listens) POSTs its summary once to a real HTTP listener on loopback, and the webhook's URL (a secret)
shows nowhere: not in the output at -vvv, the Ansible log or the report."""

import json
import os

from playbook import HOST, local_host, run_playbook
from webhook import Listener

SECRET = 'XyZsEcReTwEbHoOkToKeN'


def test_a_failed_run_posts_its_summary_once_and_the_url_shows_nowhere(alation_host, scratch):
    log = os.path.join(scratch, 'ansible.log')
    # PostgreSQL on port 1, where nothing listens: preflight refuses the host (a failed run).
    hosts = {HOST: local_host(**dict(alation_host.role_vars, alation_backup_pg_port=1))}
    with Listener(SECRET) as hook:
        run = run_playbook('backup.yml', {'alation_backup_engine': 'pg_basebackup', 'alation_backup_notify_url': hook.url},
                           hosts=hosts, workdir=scratch, env={'ANSIBLE_VERBOSITY': '3', 'ANSIBLE_LOG_PATH': log})
    assert run.rc != 0, run.output
    assert len(hook.posts) == 1, (hook.posts, run.output)
    post = hook.posts[0]
    where = post['path'].replace(SECRET, '<secret>')
    print('The notification body as received (POST %s, %s):' % (where, post['content_type']))
    print(json.dumps(post['body'], indent=2, sort_keys=True))
    body = post['body']
    assert post['content_type'] == 'application/json'
    assert body['result'] == 'failed' and body['failed_hosts'] == [HOST]
    text = body['text'].split('\n')
    assert text[0] == 'Alation backup run: FAILED on 1 of 1 hosts (%s)' % HOST, text
    assert text[1].startswith(HOST + ': FAILED preflight: ') and text[1:] == body['lines'], text
    assert [r['host'] for r in body['records']] == [HOST] and body['records'][0]['result'] == 'failed'
    # The run's own record says it was sent; the secret is in none of what the run left.
    record = run.records[HOST]
    assert record['notification'] == dict(result='sent', on='failure', status=200, error='')
    with open(log) as f:
        logged = f.read()
    with open(run.report_path) as f:
        report = f.read()
    assert 'Summary | Gather a record for every host' in run.output and 'Summary | Gather a record' in logged
    for where, text in (('the output at -vvv', run.output), ('the Ansible log', logged), ('the report', report)):
        assert SECRET not in text, where
