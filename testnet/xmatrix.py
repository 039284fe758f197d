"""Print an X-Matrix Authorization header for a self-signed federation request (for curl).

  xmatrix.py SIGNING_KEY_FILE SERVER_NAME METHOD URI [JSON_BODY]

origin = destination = SERVER_NAME. URI is the exact request target (path + query, percent-encoded
exactly as sent). Example:
  curl -H "Authorization: $(venv/bin/python testnet/xmatrix.py key example.test GET "$URI")" "http://127.0.0.1:18008$URI"
"""
import json
import sys

from signedjson.key import read_signing_keys
from signedjson.sign import sign_json


def header(key_file, server, method, uri, body=None):
    with open(key_file) as f:
        key = read_signing_keys(f)[0]
    req = {"method": method, "uri": uri, "origin": server, "destination": server}
    if body is not None:
        req["content"] = body
    kid = f"{key.alg}:{key.version}"
    sig = sign_json(req, server, key)["signatures"][server][kid]
    return f'X-Matrix origin="{server}",destination="{server}",key="{kid}",sig="{sig}"'


if __name__ == "__main__":
    a = sys.argv[1:]
    print(header(a[0], a[1], a[2], a[3], json.loads(a[4]) if len(a) > 4 else None))
