"""Recomputes each request of sigv4_request_gen with botocore's own S3 SigV4
signer and compares the Authorization header and the URL with ours.

Reads JSON lines on stdin. The URL botocore would send is built the way its S3
serializer does (the key percent-encoded with '/' and '~' kept, the bucket in
the path or in the host) and its query is botocore's canonical query string,
which is what we put on the wire. Exits 1 on any difference, printing the first
few with botocore's canonical request.
"""
import datetime
import json
import sys
from unittest import mock

import botocore
import botocore.auth
import botocore.awsrequest
import botocore.credentials
import botocore.utils
from urllib.parse import urlsplit

MAX_SHOWN = 5


def parse_authorization(value):
    """{'Credential': ..., 'SignedHeaders': ..., 'Signature': ...}; botocore
    separates the parts with ', ', we with ','."""
    algorithm, _, rest = value.partition(' ')
    parts = {'algorithm': algorithm}
    for part in rest.split(','):
        name, _, val = part.strip().partition('=')
        parts[name] = val
    return parts


def botocore_sign(req):
    scheme, _, hostport = req['endpoint'].partition('://')
    hostport = hostport.rstrip('/')
    key = botocore.utils.percent_encode(req['key'], safe='/~')
    if req['path_style']:
        netloc = hostport
        path = '/' + req['bucket'] + ('/' + key if req['key'] else '')
    else:
        netloc = req['bucket'] + '.' + hostport
        path = '/' + key
    url = f'{scheme}://{netloc}{path}'
    request = botocore.awsrequest.AWSRequest(
        method=req['method'],
        url=url,
        headers=dict(req['headers']),
        data=bytes.fromhex(req['body_hex']),
        params=[tuple(p) for p in req['query']],
    )
    credentials = botocore.credentials.Credentials(
        req['access_key'], req['secret_key'], req['session_token'] or None)
    signer = botocore.auth.S3SigV4Auth(credentials, 's3', req['region'])
    now = datetime.datetime.fromtimestamp(
        req['time'], datetime.timezone.utc).replace(tzinfo=None)
    with mock.patch('botocore.auth.get_current_datetime', return_value=now):
        signer.add_auth(request)
    # On the wire: the Host botocore signed (no default port), the path as
    # is and botocore's canonical query string.
    query = signer.canonical_query_string(request)
    host = botocore.auth._host_from_url(url)
    wire_url = f'{scheme}://{host}{path}' + ('?' + query if query else '')
    # urlsplit as botocore's signer sees it: the path it signs.
    assert urlsplit(url).path == (path or '/'), (url, path)
    return request, signer, wire_url


def main():
    if not hasattr(botocore.auth, 'get_current_datetime'):
        print('botocore %s has no botocore.auth.get_current_datetime to pin '
              'the time; install the pinned version (testing/setup.sh)' %
              botocore.__version__)
        return 1
    total = matched = 0
    shown = 0
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        total += 1
        request, signer, wire_url = botocore_sign(req)
        theirs = request.headers['Authorization']
        ours = req['authorization']
        problems = []
        if parse_authorization(theirs) != parse_authorization(ours):
            problems.append(f'authorization\n    ours:     {ours}\n'
                            f'    botocore: {theirs}')
        if wire_url != req['url']:
            problems.append(f'url\n    ours:     {req["url"]}\n'
                            f'    botocore: {wire_url}')
        if not problems:
            matched += 1
            continue
        if shown < MAX_SHOWN:
            shown += 1
            print(f'MISMATCH request {total}: {json.dumps(req)[:600]}')
            for p in problems:
                print('  ' + p)
            del request.headers['Authorization']  # as it was when signed
            print('  botocore canonical request:\n' +
                  signer.canonical_request(request))
    print(f'{matched} of {total} requests match botocore {botocore.__version__} '
          '(Authorization header and URL)')
    return 0 if total > 0 and matched == total else 1


if __name__ == '__main__':
    sys.exit(main())
