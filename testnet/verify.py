"""Sanity checks of a running, populated testnet (`synapse.sh verify`). Prints no secrets."""
import json
import sys
import urllib.parse

import requests

from xmatrix import header


def q(s):
    return urllib.parse.quote(s, safe="")


def main(path):
    with open(path) as f:
        s = json.load(f)
    base, srv = s["client_url"], s["server_name"]
    adm = {"Authorization": "Bearer " + s["admin"]["access_token"]}
    ok = True

    def check(name, cond, detail=""):
        nonlocal ok
        ok &= bool(cond)
        print(f"{'ok  ' if cond else 'FAIL'} {name} {detail}")

    huge = s["rooms"]["huge"]["room_id"]
    check("huge room >= 5000 events", s["event_counts"][huge] >= 5000, s["event_counts"][huge])
    users = requests.get(f"{base}/_synapse/admin/v2/users", params={"deactivated": "true", "limit": 100},
                         headers=adm, timeout=30).json()
    check("8 users incl. deactivated", users["total"] == 8, users["total"])

    room = s["rooms"]["public"]["room_id"]
    ext = requests.get(f"{base}/_synapse/admin/v1/rooms/{q(room)}/forward_extremities",
                       headers=adm, timeout=30).json()["results"][0]["event_id"]
    uri = f"/_matrix/federation/v1/state_ids/{q(room)}?event_id={q(ext)}"
    auth = {"Authorization": header(s["signing_key_path"], srv, "GET", uri)}
    r = requests.get(base + uri, headers=auth, timeout=30)
    check("self-signed federation /state_ids", r.status_code == 200 and r.json()["pdu_ids"], r.status_code)
    r = requests.get(s["client_only_url"] + uri, headers=auth, timeout=30)
    check("client-only listener 404s federation", r.status_code == 404
          and r.json().get("errcode") == "M_UNRECOGNIZED", r.status_code)

    w = s.get("whitelist") or {}
    if w:
        uri = "/_matrix/federation/v1/version"
        r = requests.get(w["client_url"] + uri, timeout=30, headers={
            "Authorization": header(w["signing_key_path"], w["server_name"], "GET", uri)})
        check("whitelist instance denies self-federation", r.status_code == 403, r.status_code)
        r = requests.get(w["client_url"] + "/_matrix/client/v3/account/whoami", timeout=30,
                         headers={"Authorization": "Bearer " + w["admin"]["access_token"]})
        check("whitelist admin token works", r.status_code == 200, r.status_code)
    else:
        check("whitelist section present", False)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
