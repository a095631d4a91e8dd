# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An incoming webhook for the notification tests: a real HTTP listener on a free loopback port, in a thread."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer


class Listener(object):
    """Keeps every POST (path, Content-Type, the body as sent and as JSON) and answers ``status`` after ``delay`` s.

    ``url`` ends with ``secret``, as a Slack or Teams incoming webhook's URL ends with its token."""

    def __init__(self, secret='SeCrEtToKeN', status=200, delay=0.0):
        self.posts = []
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                raw = self.rfile.read(int(self.headers.get('Content-Length') or 0)).decode('utf-8')
                listener.posts.append(dict(path=self.path, content_type=self.headers.get('Content-Type'), raw=raw,
                                           body=json.loads(raw)))
                if delay:
                    threading.Event().wait(delay)
                self.send_response(status)
                self.send_header('Content-Length', '2')
                self.end_headers()
                self.wfile.write(b'ok')

            def log_message(self, *args):
                pass

        self.server = HTTPServer(('127.0.0.1', 0), Handler)
        self.url = 'http://127.0.0.1:%d/services/T000/B000/%s' % (self.server.server_port, secret)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
