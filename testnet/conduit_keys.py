"""Verified contacts on a real Conduit (run by hand, not by CI): `/keys/query` as each migrated
user, on Synapse and on a Conduit started on the written database, compared.

    python3 testnet/conduit_keys.py --conduit http://127.0.0.1:6167 \
        --scenario "$TM_TESTNET_SCENARIO"

Every signature Synapse shows a user must be shown by Conduit too (a contact they verified
stays verified), keys must be the same, and a signature one user made must not be shown to a
third user. What Conduit shows beyond Synapse is only what its own rules add (docs/CONDUIT.md,
"Verified contacts"). Uses the users' own migrated access tokens; prints no secrets. Exit 1 if
any check failed.
"""
import argparse
import json
import urllib.request

from checks import Checks


def keys_query(base, token, users):
    body = json.dumps({"device_keys": {u: [] for u in users}}).encode()
    req = urllib.request.Request(f"{base}/_matrix/client/v3/keys/query", data=body,
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def signatures(key):
    return {(signer, kid, sig) for signer, sigs in (key or {}).get("signatures", {}).items()
            for kid, sig in sigs.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--conduit", required=True)
    ap.add_argument("--scenario", required=True)
    a = ap.parse_args()
    s = json.load(open(a.scenario))
    everyone = [u["user_id"] for u in s["users"].values()]
    check, verified = Checks(), 0

    for viewer in (u for u in s["users"].values() if not u["deactivated"]):
        token = next(iter(viewer["devices"].values()))
        syn = keys_query(s["client_url"], token, everyone)
        con = keys_query(a.conduit, token, everyone)
        for t in everyone:
            who = f"{t} as {viewer['user_id']} sees it"
            sd, cd = syn["device_keys"].get(t, {}), con["device_keys"].get(t, {})
            check(sd == cd, f"device keys of {who}")
            for field in ("master_keys", "self_signing_keys", "user_signing_keys"):
                sk, ck = syn.get(field, {}).get(t), con.get(field, {}).get(t)
                check((sk is None) == (ck is None), f"{field} of {who}: present on one side")
                if sk is None or ck is None:
                    continue
                check(all(sk[k] == ck[k] for k in ("user_id", "usage", "keys")), f"{field} of {who}")
                ss, cs = signatures(sk), signatures(ck)
                check(ss <= cs, f"{field} of {who}: Synapse's signatures missing: {sorted(ss - cs)}")
                extra = {sig[0] for sig in cs - ss}
                # The owner sees every signature on their key; anyone else only the owner's.
                check(viewer["user_id"] == t or extra <= {t},
                      f"{field} of {who}: signatures of others shown: {sorted(extra)}")
                verified += sum(1 for sig in ss if sig[0] != t)
    check(verified > 0, "a verified contact in the scenario")
    check.finish(f"{verified} signatures of verified contacts seen")


if __name__ == "__main__":
    main()
