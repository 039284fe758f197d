"""Turn Synapse's generated config into a test instance config.

Usage: configure.py INSTANCE_DIR NAME PORT

Always starts again from homeserver.yaml.generated (kept untouched), so it is
idempotent and re-running it after moving the instance dir (snapshot restore)
or changing TM_SYNAPSE_PORT fixes every path and port.
"""
import os
import sys

import yaml

RC_KEYS = [
    "rc_message", "rc_registration", "rc_registration_token_validity",
    "rc_3pid_validation", "rc_third_party_invite", "rc_media_create",
    "rc_profile", "rc_user_directory", "rc_room_creation",
    "rc_delayed_event_mgmt", "rc_reports", "rc_key_requests", "rc_admin_redaction",
]
FAST = {"per_second": 10000, "burst_count": 100000}


def listener(port, names):
    return {
        "port": port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": False,
        "x_forwarded": False, "resources": [{"names": names, "compress": False}],
    }


def appservice(inst, server):
    path = os.path.join(inst, "appservice.yaml")
    if not os.path.exists(path):
        esc = server.replace(".", "\\.")
        reg = {
            "id": "transition-matrix-import", "url": None,
            "as_token": os.urandom(24).hex(), "hs_token": os.urandom(24).hex(),
            "sender_localpart": "transition-matrix-import", "rate_limited": False,
            "namespaces": {
                "users": [{"exclusive": False, "regex": f"@.*:{esc}"}],
                "aliases": [{"exclusive": False, "regex": f"#.*:{esc}"}],
                "rooms": [],
            },
        }
        with open(path + ".tmp", "w") as f:
            yaml.safe_dump(reg, f, sort_keys=False)
        os.chmod(path + ".tmp", 0o600)
        os.replace(path + ".tmp", path)
    return path


def main():
    inst, name, port = os.path.abspath(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    with open(os.path.join(inst, "homeserver.yaml.generated")) as f:
        cfg = yaml.safe_load(f)
    server = cfg["server_name"]
    p = lambda *a: os.path.join(inst, *a)  # noqa: E731

    if name == "whitelist":
        cfg["listeners"] = [listener(port, ["client", "federation"])]
        # Not including its own name: self-federation must get 403.
        cfg["federation_domain_whitelist"] = ["other.test"]
        # The Mattermost import's Synapse target: an application service (what
        # `transition-matrix mattermost registration` prints), tokens made once per instance.
        cfg["app_service_config_files"] = [appservice(inst, server)]
    else:
        cfg["listeners"] = [
            listener(port, ["client", "federation"]),
            listener(port + 1, ["client"]),  # negative test: no federation here
        ]
    cfg.update({
        "pid_file": p("homeserver.pid"),
        "database": {"name": "sqlite3", "args": {"database": p("homeserver.db")}},
        "media_store_path": p("media_store"),
        "signing_key_path": p(f"{server}.signing.key"),
        "log_config": p("log.config"),
        "public_baseurl": f"http://127.0.0.1:{port}/",
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "presence": {"enabled": False},
        # Since 1.126 only server admins may publish to the room directory by default; the
        # scenario has a user publish the lobby, as on most real servers.
        "room_list_publication_rules": [{"action": "allow"}],
        "url_preview_enabled": False,
        "enable_registration": False,
        "report_stats": False,
        "enable_metrics": False,
    })
    # The generated config always has one, but be explicit about the contract.
    cfg.setdefault("registration_shared_secret", os.urandom(24).hex())
    for k in RC_KEYS:
        cfg[k] = dict(FAST)
    cfg["rc_login"] = {k: dict(FAST) for k in ("address", "account", "failed_attempts")}
    cfg["rc_joins"] = {"local": dict(FAST), "remote": dict(FAST)}
    cfg["rc_joins_per_room"] = dict(FAST)
    cfg["rc_invites"] = {k: dict(FAST) for k in ("per_room", "per_user", "per_issuer")}
    cfg["rc_presence"] = {"per_user": dict(FAST)}
    cfg["rc_federation"] = {"window_size": 1000, "sleep_limit": 10000, "sleep_delay": 0,
                            "reject_limit": 100000, "concurrent": 100}

    # Log to a file at INFO, never to stdout/stderr.
    log = {
        "version": 1,
        "formatters": {"precise": {"format": "%(asctime)s - %(name)s - %(lineno)d - "
                                             "%(levelname)s - %(request)s - %(message)s"}},
        "handlers": {
            "file": {"class": "logging.FileHandler", "formatter": "precise",
                     "filename": p("homeserver.log"), "encoding": "utf8"},
            "buffer": {"class": "synapse.logging.handlers.PeriodicallyFlushingMemoryHandler",
                       "target": "file", "capacity": 50, "flushLevel": 30, "period": 2},
        },
        "loggers": {"synapse.storage.SQL": {"level": "INFO"}},
        "root": {"level": "INFO", "handlers": ["buffer"]},
        "disable_existing_loggers": False,
    }
    with open(p("log.config"), "w") as f:
        yaml.safe_dump(log, f, sort_keys=False)
    tmp = p("homeserver.yaml.tmp")
    with open(tmp, "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    os.chmod(tmp, 0o600)  # holds the shared secret
    os.replace(tmp, p("homeserver.yaml"))


if __name__ == "__main__":
    main()
