#!/usr/bin/env python3
"""Deterministic Mattermost test data for transition-matrix (Python 3 stdlib only).

    generate.py --out DIR [--seed S] [--posts N] [--pg-only] [--db-name DB]
                [--pg-port P] [--mysql-port P] [--site-url URL]

Without --posts: the small hand-written fixture that covers every case the importer must
handle. Writes into DIR:
    pg-data.sql        COPY statements for schema-postgres.sql (psql -f)
    mysql-data.sql     INSERT statements for schema-mysql.sql
    data/              local file store (FileSettings.Directory): attachments with
                       thumbnails/previews, emoji/<id>/image, users/<id>/profile.png, ...
    data/export/<job>_export.zip   mmctl-style bulk export (import.jsonl + data/...)
    export-name        the zip's file name
    config.json        Mattermost config (postgres), config-mysql.json (mysql)
    fixture.json       what the importer tests assert against (see README.md)
With --posts N: a benchmark world with N posts (PostgreSQL only, no file contents).
The same seed always gives byte-identical output.
"""
import argparse
import base64
import datetime
import hashlib
import json
import os
import random
import struct
import sys
import zipfile

# Real bcrypt hashes (cost 4, fixed salts) of "<username>-password", as Mattermost stores them:
# the import copies them, and Conduit with patches/conduit-bcrypt-login.patch accepts them.
PASSWORD_HASHES = {
    'sysadmin': '$2a$04$T1rDMTytTcs6REnGJ7t1L.HPY1KIoGiK0Km.67MbV5tgFlGPW6GCW',
    'alice': '$2a$04$pWEH9M.tYdBwNlhnkVhGZ.XVKmcdh0ZInZxqrQz.3XgibbL08Ky3u',
    'bob': '$2a$04$/01W6QEYhXkUvRfVLlTi1.k.mKhQ8XCMNa/e9F/sUoVoa9jZTMHra',
    'carol': '$2a$04$KkXFKlWccXlKI/JvevvQ3.RngiAaW8/oEH2ENvk3FU3dW7.fl4tpC',
    'dave': '$2a$04$foGB2Dzh11SSqhRKSR3rg.Q6MUQF0i/b9DJV3CnwkOtZUbIBZE6xi',
    'erin.e': '$2a$04$he0p6gbXYDrOxAeF/v9TR.FW8dfBcoXvuBxu/FHu0e/vraYcHAt8K',
    'frank': '$2a$04$1itYNvkh0lpnWlfFNlrJB.E2ffwcSZbBM9Z4YVrkEiAlUxxr6TT4K',
    'grace_g': '$2a$04$iY2yQ2FMbA8iW1ka/0IOg.f93olkjtcmZUUYFuYfvhgkeIY4I2caO',
    'zoe': '$2a$04$b/8k/1xVjf.5gfsHFag.p.e8zW9wpGpG8q.7Pjs4OkCmO.z1GcjTi',
}

import zlib
from collections import defaultdict

# ---------------------------------------------------------------------------------------------
# ids and time

_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
MM_ALPHABET = "ybndrfg8ejkmcpqxot1uwisza345h769"
_TR = str.maketrans(_B32, MM_ALPHABET)


def mmid(seed, label):
    """A 26-char Mattermost id (UUIDv4 bytes, MM base32), derived from seed+label."""
    b = bytearray(hashlib.sha256(f"{seed}/{label}".encode()).digest()[:16])
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    return base64.b32encode(bytes(b)).decode().rstrip("=").translate(_TR)


BASE = 1709283600000  # 2024-03-01T09:00:00Z in ms


def T(day, h=0, m=0, s=0, ms=0):
    return BASE + (((day * 24 + h) * 60 + m) * 60 + s) * 1000 + ms


def ymd(ms):
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime("%Y%m%d")


def jdump(o):
    return json.dumps(o, ensure_ascii=False, separators=(",", ":"))


# ---------------------------------------------------------------------------------------------
# real (tiny) media files

def png(w, h, pixel):
    """RGB PNG; pixel(x, y) -> (r, g, b)."""
    raw = bytearray()
    for y in range(h):
        raw.append(0)
        for x in range(w):
            raw.extend(pixel(x, y))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(bytes(raw), 9)) + chunk(b"IEND", b""))


def gradient_png(w, h, hue):
    r0, g0, b0 = hue
    return png(w, h, lambda x, y: ((r0 + x * 255 // max(w, 1)) % 256, (g0 + y * 255 // max(h, 1)) % 256, b0))


def scaled(w, h, maxw, maxh):
    f = min(maxw / w, maxh / h, 1.0)
    return max(1, int(w * f)), max(1, int(h * f))


def _gif_lzw(indices):
    """Uncompressed-style GIF LZW (min code size 8): clear code every 254 literals keeps codes 9 bits."""
    clear, end = 256, 257
    codes = []
    for i, v in enumerate(indices):
        if i % 254 == 0:
            codes.append(clear)
        codes.append(v)
    codes.append(end)
    out, acc, nbits = bytearray(), 0, 0
    for c in codes:
        acc |= c << nbits
        nbits += 9
        while nbits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            nbits -= 8
    if nbits:
        out.append(acc & 0xFF)
    blocks = bytearray([8])
    for i in range(0, len(out), 255):
        part = out[i:i + 255]
        blocks += bytes([len(part)]) + part
    return bytes(blocks + b"\x00")


def animated_gif(w, h, frames):
    """frames: list of pixel(x, y) -> palette index 0..255; palette = a colour wheel."""
    pal = bytearray()
    for i in range(256):
        pal += bytes([(i * 37) % 256, (i * 91 + 60) % 256, (255 - i) % 256])
    out = bytearray(b"GIF89a" + struct.pack("<HHBBB", w, h, 0xF7, 0, 0) + pal)
    out += b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"  # loop forever
    for f in frames:
        out += b"\x21\xf9\x04\x04" + struct.pack("<H", 20) + b"\x00\x00"  # 200 ms
        out += b"\x2c" + struct.pack("<HHHHB", 0, 0, w, h, 0)
        out += _gif_lzw([f(x, y) for y in range(h) for x in range(w)])
    return bytes(out + b"\x3b")


def tiny_pdf(text):
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 144] /Contents 4 0 R "
            b"/Resources << /Font << /F1 5 0 R >> >> >>"]
    stream = f"BT /F1 18 Tf 20 70 Td ({text}) Tj ET".encode()
    objs.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objs.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.4\n")
    offs = []
    for i, o in enumerate(objs, 1):
        offs.append(len(out))
        out += b"%d 0 obj\n" % i + o + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    for o in offs:
        out += b"%010d 00000 n \n" % o
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return bytes(out)


def wav(ms=250, rate=8000):
    n = rate * ms // 1000
    data = bytes(128 + int(60 * ((i // 10) % 2 * 2 - 1)) for i in range(n))  # square wave, 8-bit
    return (b"RIFF" + struct.pack("<I", 36 + n) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate, 1, 8)
            + b"data" + struct.pack("<I", n) + data)


# ---------------------------------------------------------------------------------------------
# table layout: PostgreSQL name (= MySQL name lower-cased) and typed columns.
# kinds: s string ('' default), n nullable string (NULL default), i bigint (0), ni nullable int,
#        b bool (false), j json (NULL default unless given), x bytes (NULL)

TABLES = [
    ("users", "Users", "Id:s CreateAt:i UpdateAt:i DeleteAt:i Username:s Password:s AuthData:n AuthService:s "
     "Email:s EmailVerified:b Nickname:s FirstName:s LastName:s Roles:s AllowMarketing:b Props:j NotifyProps:j "
     "LastPasswordUpdate:i LastPictureUpdate:i FailedAttempts:i Locale:s MfaActive:b MfaSecret:s Position:s "
     "Timezone:j RemoteId:n LastLogin:i MfaUsedTimestamps:j"),
    ("bots", "Bots", "UserId:s Description:s OwnerId:s CreateAt:i UpdateAt:i DeleteAt:i LastIconUpdate:i"),
    ("teams", "Teams", "Id:s CreateAt:i UpdateAt:i DeleteAt:i DisplayName:s Name:s Description:s Email:s Type:s "
     "CompanyName:s AllowedDomains:s InviteId:s SchemeId:n AllowOpenInvite:b LastTeamIconUpdate:i "
     "GroupConstrained:b CloudLimitsArchived:b"),
    ("teammembers", "TeamMembers", "TeamId:s UserId:s Roles:s DeleteAt:i SchemeUser:b SchemeAdmin:b SchemeGuest:b "
     "CreateAt:i"),
    ("channels", "Channels", "Id:s CreateAt:i UpdateAt:i DeleteAt:i TeamId:s Type:s DisplayName:s Name:s Header:s "
     "Purpose:s LastPostAt:i TotalMsgCount:i ExtraUpdateAt:i CreatorId:s SchemeId:n GroupConstrained:b Shared:b "
     "TotalMsgCountRoot:i LastRootPostAt:i BannerInfo:j DefaultCategoryName:s AutoTranslation:b"),
    ("channelmembers", "ChannelMembers", "ChannelId:s UserId:s Roles:s LastViewedAt:i MsgCount:i MentionCount:i "
     "NotifyProps:j LastUpdateAt:i SchemeUser:b SchemeAdmin:b SchemeGuest:b MentionCountRoot:i MsgCountRoot:i "
     "UrgentMentionCount:i AutoTranslation:b AutoTranslationDisabled:b"),
    ("channelmemberhistory", "ChannelMemberHistory", "ChannelId:s UserId:s JoinTime:i LeaveTime:ni"),
    ("posts", "Posts", "Id:s CreateAt:i UpdateAt:i DeleteAt:i UserId:s ChannelId:s RootId:s OriginalId:s Message:s "
     "Type:s Props:j Hashtags:s Filenames:s FileIds:s HasReactions:b EditAt:i IsPinned:b RemoteId:n"),
    ("postspriority", "PostsPriority", "PostId:s ChannelId:s Priority:s RequestedAck:b PersistentNotifications:b"),
    ("threads", "Threads", "PostId:s ReplyCount:i LastReplyAt:i Participants:j ChannelId:s ThreadDeleteAt:i "
     "ThreadTeamId:s"),
    ("fileinfo", "FileInfo", "Id:s CreatorId:s PostId:s CreateAt:i UpdateAt:i DeleteAt:i Path:s ThumbnailPath:s "
     "PreviewPath:s Name:s Extension:s Size:i MimeType:s Width:i Height:i HasPreviewImage:b MiniPreview:x "
     "Content:s RemoteId:n Archived:b ChannelId:s"),
    ("reactions", "Reactions", "UserId:s PostId:s EmojiName:s CreateAt:i UpdateAt:i DeleteAt:i RemoteId:n "
     "ChannelId:s"),
    ("emoji", "Emoji", "Id:s CreateAt:i UpdateAt:i DeleteAt:i CreatorId:s Name:s"),
    ("preferences", "Preferences", "UserId:s Category:s Name:s Value:s"),
    ("sidebarcategories", "SidebarCategories", "Id:s UserId:s TeamId:s SortOrder:i Sorting:s Type:s DisplayName:s "
     "Muted:b Collapsed:b"),
    ("sidebarchannels", "SidebarChannels", "ChannelId:s UserId:s CategoryId:s SortOrder:i"),
    ("systems", "Systems", "Name:s Value:s"),
    ("db_migrations", "db_migrations", "Version:i Name:s"),
    ("configurations", "Configurations", "Id:s Value:s CreateAt:i Active:b SHA:s"),
]
COLS = {t: [(c.split(":")[0], c.split(":")[1]) for c in spec.split()] for t, _, spec in TABLES}
MYNAME = {t: m for t, m, _ in TABLES}
DEFAULT = {"s": "", "n": None, "i": 0, "ni": None, "b": False, "j": None, "x": None}


def cell(row, col, kind):
    v = row.get(col.lower(), DEFAULT[kind])
    if kind == "j" and v is not None and not isinstance(v, str):
        v = jdump(v)
    return v


def pg_copy_escape(s):
    return s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def pg_value(v):
    if v is None:
        return "\\N"
    if v is True:
        return "t"
    if v is False:
        return "f"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, bytes):
        return "\\\\x" + v.hex()
    return pg_copy_escape(v)


def pg_copy_header(table):
    return "COPY %s (%s) FROM stdin;\n" % (table, ", ".join(c.lower() for c, _ in COLS[table]))


def write_pg(rows, f):
    f.write("SET client_encoding = 'UTF8';\n")
    for table, _, _ in TABLES:
        if not rows.get(table):
            continue
        f.write(pg_copy_header(table))
        for r in rows[table]:
            f.write("\t".join(pg_value(cell(r, c, k)) for c, k in COLS[table]) + "\n")
        f.write("\\.\n")


def my_value(v):
    if v is None:
        return "NULL"
    if v is True:
        return "1"
    if v is False:
        return "0"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, bytes):
        return "X'%s'" % v.hex() if v else "''"
    return "'" + (v.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\r", "\\r")
                  .replace("\0", "\\0").replace("\x1a", "\\Z")) + "'"


def write_mysql(rows, f):
    f.write("SET NAMES utf8mb4;\nSET FOREIGN_KEY_CHECKS = 0;\nSET UNIQUE_CHECKS = 0;\nSTART TRANSACTION;\n")
    for table, my, _ in TABLES:
        rs = rows.get(table) or []
        cols = ", ".join(c for c, _ in COLS[table])
        for i in range(0, len(rs), 200):
            vals = ",\n".join("(" + ", ".join(my_value(cell(r, c, k)) for c, k in COLS[table]) + ")"
                              for r in rs[i:i + 200])
            f.write(f"INSERT INTO {my} ({cols}) VALUES\n{vals};\n")
    f.write("COMMIT;\n")


MIGRATIONS = """
000001_create_teams 000002_create_team_members 000003_create_cluster_discovery 
000004_create_command_webhooks 000005_create_compliances 000006_create_emojis 
000007_create_user_groups 000008_create_group_members 000009_create_group_teams 
000010_create_group_channels 000011_create_link_metadata 000012_create_commands 
000013_create_incoming_webhooks 000014_create_outgoing_webhooks 000015_create_systems 
000016_create_reactions 000017_create_roles 000018_create_schemes 000019_create_licenses 
000020_create_posts 000021_create_product_notice_view_state 000022_create_sessions 
000023_create_terms_of_service 000024_create_audits 000025_create_oauth_access_data 
000026_create_preferences 000027_create_status 000028_create_tokens 000029_create_bots 
000030_create_user_access_tokens 000031_create_remote_clusters 000032_create_sharedchannels 
000033_create_sidebar_channels 000034_create_oauthauthdata 
000035_create_sharedchannelattachments 000036_create_sharedchannelusers 
000037_create_sharedchannelremotes 000038_create_jobs 000039_create_channel_member_history 
000040_create_sidebar_categories 000041_create_upload_sessions 000042_create_threads 
000043_thread_memberships 000044_create_user_terms_of_service 
000045_create_plugin_key_value_store 000046_create_users 000047_create_file_info 
000048_create_oauth_apps 000049_create_channels 000050_create_channelmembers 
000051_create_msg_root_count 000052_create_public_channels 000053_create_retention_policies 
000054_create_crt_channelmembership_count 000055_create_crt_thread_count_and_unreads 
000056_upgrade_channels_v6.0 000057_upgrade_command_webhooks_v6.0 
000058_upgrade_channelmembers_v6.0 000059_upgrade_users_v6.0 000060_upgrade_jobs_v6.0 
000061_upgrade_link_metadata_v6.0 000062_upgrade_sessions_v6.0 000063_upgrade_threads_v6.0 
000064_upgrade_status_v6.0 000065_upgrade_groupchannels_v6.0 000066_upgrade_posts_v6.0 
000067_upgrade_channelmembers_v6.1 000068_upgrade_teammembers_v6.1 000069_upgrade_jobs_v6.1 
000070_upgrade_cte_v6.1 000071_upgrade_sessions_v6.1 000072_upgrade_schemes_v6.3 
000073_upgrade_plugin_key_value_store_v6.3 000074_upgrade_users_v6.3 
000075_alter_upload_sessions_index 000076_upgrade_lastrootpostat 000077_upgrade_users_v6.5 
000078_create_oauth_mattermost_app_id 000079_usergroups_displayname_index 
000080_posts_createat_id 000081_threads_deleteat 000082_upgrade_oauth_mattermost_app_id 
000083_threads_threaddeleteat 000084_recent_searches 000085_fileinfo_add_archived_column 
000086_add_cloud_limits_archived 000087_sidebar_categories_index 000088_remaining_migrations 
000089_add-channelid-to-reaction 000090_create_enums 000091_create_post_reminder 
000092_add_createat_to_teamembers 000093_notify_admin 000094_threads_teamid 
000095_remove_posts_parentid 000096_threads_threadteamid 000097_create_posts_priority 
000098_create_post_acknowledgements 000099_create_drafts 000100_add_draft_priority_column 
000101_create_true_up_review_history 000102_posts_originalid_index 
000103_add_sentat_to_notifyadmin 000104_upgrade_notifyadmin 000105_remove_tokens 
000106_fileinfo_channelid 000107_threadmemberships_cleanup 
000108_remove_orphaned_oauth_preferences 000109_create_persistent_notifications 
000111_update_vacuuming 000112_rework_desktop_tokens 
000113_create_retentionidsfordeletion_table 
000114_sharedchannelremotes_drop_nextsyncat_description 000115_user_reporting_changes 
000116_create_outgoing_oauth_connections 000117_msteams_shared_channels 
000118_create_index_poststats 000119_msteams_shared_channels_opts 
000120_create_channelbookmarks_table 000121_remove_true_up_review_history 
000122_preferences_value_length 000123_remove_upload_file_permission 
000124_remove_manage_team_permission 000125_remoteclusters_add_default_team_id 
000126_sharedchannels_remotes_add_deleteat 000127_add_mfa_used_ts_to_users 
000128_create_scheduled_posts 000129_add_property_system_architecture 
000130_system_console_stats 000131_create_index_pagination_on_property_values 
000132_create_index_pagination_on_property_fields 000133_add_channel_banner_fields 
000134_create_access_control_policies 000135_sidebarchannels_categoryid 
000136_create_attribute_view 000137_update_attribute_view 
000138_add_default_category_name_to_channel 000139_remoteclusters_add_last_global_user_sync_at 
000140_add_lastmemberssyncat_to_sharedchannelremotes 
000141_add_remoteid_channelid_to_post_acknowledgements 000142_create_content_flagging_tables 
000143_content_flagging_table_index 000144_add_dcr_fields_to_oauth_apps 
000145_add_pkce_to_oauthauthdata 000146_add_audience_and_resource_to_oauth 
000147_create_autotranslation_tables 000148_add_burn_on_read_messages 000149_create_recaps 
000150_add_translation_state 000151_add_autotranslationdisabled_to_channelmembers 
000152_translations_primary_key_change 000153_add_translation_channel_id 
000154_drop_translation_updateat_index 000155_create_translation_channel_updateat_index 
000156_add_schemeid_to_roles 000157_backfill_roles_schemeid 000158_add_roles_schemeid_index 
000159_deduplicate_policy_names """.split()


# ---------------------------------------------------------------------------------------------
# the world builder (Mattermost semantics of §2.2: soft deletes, edit history rows, ...)

CHANNEL_NOTIFY = {"desktop": "default", "email": "default", "ignore_channel_mentions": "default",
                  "mark_unread": "all", "push": "default"}
USER_NOTIFY = {"channel": "true", "comments": "never", "desktop": "mention", "desktop_sound": "true",
               "email": "true", "first_name": "false", "mention_keys": "", "push": "mention",
               "push_status": "away"}


class World:
    def __init__(self, seed, site_url):
        self.seed = seed
        self.site_url = site_url
        self.rows = defaultdict(list)
        self.files = {}          # store path -> bytes
        self.users = {}          # key -> row
        self.teams = {}
        self.channels = {}
        self.posts = []
        self.post = {}           # id -> row
        self.members = defaultdict(dict)   # channel id -> {user id: row meta}
        self.fileinfo = {}
        self.emoji = {}
        self.anomalies = defaultdict(list)
        self.n = 0
        self.updates = 0

    def id(self, label):
        return mmid(self.seed, label)

    def uid(self, u):
        return self.users[u]["id"] if u in self.users else u

    def uname(self, uid):
        for r in self.users.values():
            if r["id"] == uid:
                return r["username"]
        return None

    # --- users, teams, channels -------------------------------------------------------------
    def add_user(self, key, username, first, last, at, roles="system_user", deleted=0, nickname="", position="",
                 picture=False, auth=("", None), locale="en", bot=None):
        r = dict(id=self.id("user/" + key), createat=at, updateat=deleted or at, deleteat=deleted,
                 username=username, password="" if bot or auth[0] else PASSWORD_HASHES.get(username, "$2a$10$" + hashlib.sha256(
                     username.encode()).hexdigest()[:53]), authservice=auth[0], authdata=auth[1],
                 email=f"{username}@localhost" if bot else f"{username}@example.test", emailverified=True,
                 nickname=nickname, firstname=first, lastname=last, roles=roles, allowmarketing=False,
                 props={}, notifyprops=USER_NOTIFY, lastpasswordupdate=at, lastpictureupdate=0, locale=locale,
                 position=position, timezone={"automaticTimezone": "Europe/Berlin", "manualTimezone": "",
                                              "useAutomaticTimezone": "true"},
                 lastlogin=0 if bot else at + 3600000, mfausedtimestamps=[])
        if picture:
            r["lastpictureupdate"] = at + 1000
            self.files[f"users/{r['id']}/profile.png"] = gradient_png(64, 64, (len(username) * 40 % 256, 80, 160))
        self.users[key] = r
        self.rows["users"].append(r)
        if bot:
            self.rows["bots"].append(dict(userid=r["id"], description=bot["description"],
                                          ownerid=self.uid(bot["owner"]), createat=at, updateat=at, deleteat=deleted,
                                          lasticonupdate=0))
        return r

    def add_team(self, key, name, display, type_, at, members, admins=(), left=(), icon=False):
        r = dict(id=self.id("team/" + key), createat=at, updateat=at, deleteat=0, displayname=display, name=name,
                 description=f"The {display} team", email="admin@example.test", type=type_, companyname="",
                 alloweddomains="", inviteid=self.id("invite/" + key), allowopeninvite=type_ == "O",
                 lastteamiconupdate=0, groupconstrained=False)
        if icon:
            r["lastteamiconupdate"] = at + 5000
            self.files[f"teams/{r['id']}/teamIcon.png"] = gradient_png(48, 48, (200, 30, 30))
        self.teams[key] = r
        self.rows["teams"].append(r)
        for u in members:
            guest = "system_guest" in self.users[u]["roles"]
            self.rows["teammembers"].append(dict(
                teamid=r["id"], userid=self.uid(u), roles="", deleteat=left.get(u, 0) if left else 0,
                schemeuser=not guest, schemeadmin=u in admins, schemeguest=guest, createat=at))
        return r

    def add_channel(self, key, team, type_, name, display, creator, at, header="", purpose=""):
        r = dict(id=self.id("channel/" + key), createat=at, updateat=at, deleteat=0,
                 teamid=self.teams[team]["id"] if team else "", type=type_, displayname=display, name=name,
                 header=header, purpose=purpose, creatorid=self.uid(creator) if creator else "",
                 groupconstrained=False if type_ in "OP" else None, shared=False, lastrootpostat=0)
        r["_key"] = key
        r["_team"] = team
        self.channels[key] = r
        self.rows["channels"].append(r)
        return r

    def add_dm(self, key, a, b, at):
        ia, ib = sorted([self.uid(a), self.uid(b)])
        r = self.add_channel(key, None, "D", f"{ia}__{ib}", "", a, at)
        for u in {a, b}:
            self.join(key, u, at)
        return r

    def add_gm(self, key, users, at):
        ids = sorted(self.uid(u) for u in users)
        names = sorted(self.users[u]["username"] for u in users)
        r = self.add_channel(key, None, "G", hashlib.sha1("".join(ids).encode()).hexdigest(), ", ".join(names),
                             users[0], at)
        for u in users:
            self.join(key, u, at)
        return r

    # --- membership -------------------------------------------------------------------------
    def join(self, ch, u, at, admin=False, sys=None, by=None):
        c = self.channels[ch]
        uid = self.uid(u)
        self.rows["channelmemberhistory"].append(dict(channelid=c["id"], userid=uid, jointime=at, leavetime=None))
        self.members[c["id"]][uid] = dict(admin=admin, guest="system_guest" in self.users[u]["roles"], since=at)
        name = self.users[u]["username"]
        if sys == "join":
            self.add_post(ch, u, f"{name} joined the channel.", at, type="system_join_channel",
                          props={"username": name})
        elif sys == "add":
            byname = self.users[by]["username"]
            self.add_post(ch, by, f"{name} added to the channel by {byname}.", at, type="system_add_to_channel",
                          props={"addedUserId": uid, "addedUsername": name, "userId": self.uid(by),
                                 "username": byname})

    def leave(self, ch, u, at, sys=True):
        c = self.channels[ch]
        uid = self.uid(u)
        for h in reversed(self.rows["channelmemberhistory"]):
            if h["channelid"] == c["id"] and h["userid"] == uid and h["leavetime"] is None:
                h["leavetime"] = at
                break
        del self.members[c["id"]][uid]
        if sys:
            name = self.users[u]["username"]
            self.add_post(ch, u, f"{name} left the channel.", at, type="system_leave_channel",
                          props={"username": name})

    # --- posts ------------------------------------------------------------------------------
    def add_post(self, ch, u, message, at, type="", props=None, root=None, files=(), pinned=False,
                 file_ids=None, hashtags=""):
        c = self.channels[ch]
        self.n += 1
        pid = self.id(f"post/{self.n}")
        uid = self.uid(u)
        r = dict(id=pid, createat=at, updateat=at, deleteat=0, userid=uid, channelid=c["id"],
                 rootid=root["id"] if isinstance(root, dict) else (root or ""), originalid="", message=message,
                 type=type, props=props or {}, hashtags=hashtags, filenames="[]", hasreactions=False, editat=0,
                 ispinned=pinned, remoteid=None)
        fids = list(file_ids or [])
        for i, spec in enumerate(files):
            fids.append(self.add_file(r, c, uid, at, i, *spec))
        r["fileids"] = jdump(fids)
        self.posts.append(r)
        self.post[pid] = r
        self.rows["posts"].append(r)
        return r

    def add_file(self, post, c, uid, at, i, name, mime, data, size=None, old_team_path=False):
        fid = self.id(f"file/{post['id']}/{i}")
        team = self.teams[c["_team"]]["id"] if old_team_path and c["_team"] else "noteam"
        base = f"{ymd(at)}/teams/{team}/channels/{c['id']}/users/{uid}/{fid}/"
        ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
        r = dict(id=fid, creatorid=uid, postid=post["id"], createat=at, updateat=at, deleteat=0, path=base + name,
                 thumbnailpath="", previewpath="", name=name, extension=ext, size=len(data), mimetype=mime,
                 width=0, height=0, haspreviewimage=False, minipreview=None, content="", remoteid=None,
                 archived=False, channelid=c["id"])
        self.files[r["path"]] = data
        if mime.startswith("image/") and data[:8] == b"\x89PNG\r\n\x1a\n":
            w, h = struct.unpack(">II", data[16:24])
            stem = name.rsplit(".", 1)[0]
            tw, th = scaled(w, h, 120, 100)
            pw, ph = scaled(w, h, 1920, 1920 * 16)
            r.update(width=w, height=h, haspreviewimage=True, thumbnailpath=base + stem + "_thumb.png",
                     previewpath=base + stem + "_preview.png", minipreview=gradient_png(16, 16, (10, 10, 10)))
            self.files[r["thumbnailpath"]] = gradient_png(tw, th, (0, 120, 200))
            self.files[r["previewpath"]] = gradient_png(pw, ph, (0, 120, 200))
        if mime == "application/pdf":
            r["content"] = "Transition plan"
        self.fileinfo[fid] = r
        self.rows["fileinfo"].append(r)
        return fid

    def edit(self, p, message, at):
        """Mattermost edit: the old version becomes a new row (originalid = p.id, deleteat = edit time)."""
        self.n += 1
        old = dict(p, id=self.id(f"post/{self.n}"), originalid=p["id"], deleteat=at, updateat=at,
                   props=dict(p["props"]))
        self.rows["posts"].append(old)
        p.update(message=message, editat=at, updateat=at)
        return old

    def update(self, p, at, pinned=None, props=None):
        """A change that is not an edit (pin, unpin, props): Mattermost keeps the post as it was in a
        history row all the same (originalid = p.id, deleteat = the change's time), with the same
        message; EditAt stays as it was. (Ids of their own, so the other posts keep theirs.)"""
        self.updates += 1
        old = dict(p, id=self.id(f"post-update/{self.updates}"), originalid=p["id"], deleteat=at, updateat=at,
                   props=dict(p["props"]))
        self.rows["posts"].append(old)
        if pinned is not None:
            p["ispinned"] = pinned
        if props is not None:
            p["props"] = props
        p["updateat"] = at
        return old

    def delete(self, p, at, by):
        victims = [p] + ([q for q in self.posts if q["rootid"] == p["id"] and q["deleteat"] == 0]
                         if not p["rootid"] else [])
        for q in victims:
            q.update(deleteat=at, updateat=at, props=dict(q["props"], deleteBy=self.uid(by)))
            for f in json.loads(q["fileids"]):
                if f in self.fileinfo:
                    self.fileinfo[f].update(deleteat=at, updateat=at)

    def react(self, p, u, emoji, at, removed=None):
        self.rows["reactions"].append(dict(userid=self.uid(u), postid=p["id"], emojiname=emoji, createat=at,
                                           updateat=removed or at, deleteat=removed or 0, remoteid=None,
                                           channelid=p["channelid"]))

    def add_emoji(self, key, name, creator, at, data, deleted=0):
        eid = self.id("emoji/" + key)
        r = dict(id=eid, createat=at, updateat=deleted or at, deleteat=deleted, creatorid=self.uid(creator), name=name)
        self.files[f"emoji/{eid}/image_deleted" if deleted else f"emoji/{eid}/image"] = data
        self.emoji[key] = r
        self.rows["emoji"].append(r)
        return r

    def pref(self, u, category, name, value):
        self.rows["preferences"].append(dict(userid=self.uid(u), category=category, name=name, value=value))

    def sidebar(self, u, team, favorites=(), channels=(), dms=()):
        uid, tid = self.uid(u), self.teams[team]["id"]
        for order, (typ, display, members) in enumerate([("favorites", "Favorites", favorites),
                                                         ("channels", "Channels", channels),
                                                         ("direct_messages", "Direct Messages", dms)]):
            cid = f"{typ}_{uid}_{tid}"
            self.rows["sidebarcategories"].append(dict(id=cid, userid=uid, teamid=tid, sortorder=order * 10,
                                                       sorting="" if typ != "direct_messages" else "recent",
                                                       type=typ, displayname=display, muted=False, collapsed=False))
            for i, ch in enumerate(members):
                self.rows["sidebarchannels"].append(dict(channelid=self.channels[ch]["id"], userid=uid,
                                                         categoryid=cid, sortorder=i * 10))

    # --- derived rows -----------------------------------------------------------------------
    def finalize(self):
        live_reacted = {r["postid"] for r in self.rows["reactions"] if not r["deleteat"]}
        for p in self.rows["posts"]:
            p["hasreactions"] = p["id"] in live_reacted and p["originalid"] == ""
        byc = defaultdict(list)
        for p in self.posts:
            byc[p["channelid"]].append(p)
        for c in self.rows["channels"]:
            if getattr(self, "counts", None):
                c["totalmsgcount"], c["totalmsgcountroot"], c["lastpostat"], c["lastrootpostat"] = self.counts[c["id"]]
            else:
                live = [p for p in byc[c["id"]] if p["deleteat"] == 0]
                roots = [p for p in live if not p["rootid"]]
                c["totalmsgcount"] = len(live)
                c["totalmsgcountroot"] = len(roots)
                c["lastpostat"] = max([p["createat"] for p in live] or [c["createat"]])
                c["lastrootpostat"] = max([p["createat"] for p in roots] or [c["createat"]])
            c["extraupdateat"] = c["createat"]
            c["updateat"] = max(c["updateat"], c["deleteat"])
            for uid, m in sorted(self.members[c["id"]].items()):
                self.rows["channelmembers"].append(dict(
                    channelid=c["id"], userid=uid, roles="", lastviewedat=c["lastpostat"],
                    msgcount=c["totalmsgcount"], mentioncount=0, notifyprops=CHANNEL_NOTIFY,
                    lastupdateat=c["lastpostat"], schemeuser=not m["guest"], schemeadmin=m["admin"],
                    schemeguest=m["guest"], mentioncountroot=0, msgcountroot=c["totalmsgcountroot"],
                    urgentmentioncount=0))
        threads = defaultdict(list)
        for p in self.posts:
            if p["rootid"]:
                threads[p["rootid"]].append(p)
        for rid, reps in threads.items():
            root = self.post.get(rid)
            if root is None:
                continue
            live = [q for q in reps if q["deleteat"] == 0]
            parts = []
            for q in [root] + sorted(reps, key=lambda q: (q["createat"], q["id"])):
                if q["userid"] not in parts:
                    parts.append(q["userid"])
            c = next(c for c in self.rows["channels"] if c["id"] == root["channelid"])
            self.rows["threads"].append(dict(
                postid=rid, replycount=len(live), lastreplyat=max([q["createat"] for q in live] or [0]),
                participants=parts, channelid=root["channelid"], threaddeleteat=root["deleteat"],
                threadteamid=c["teamid"]))


# ---------------------------------------------------------------------------------------------
# the small fixture: every case the importer must handle

def build_small(w):
    site = w.site_url
    U = w.add_user
    U("admin", "sysadmin", "Sam", "Sysadmin", T(0), roles="system_user system_admin", picture=True)
    U("alice", "alice", "Alice", "Andersson", T(0, 0, 1), nickname="Ali", position="Engineering Lead", picture=True)
    U("bob", "bob", "Bob", "Builder", T(0, 0, 2), picture=True)
    U("carol", "carol", "Carol", "Çelik", T(0, 0, 3))
    U("dave", "dave", "Dave", "Doe", T(0, 0, 4))
    U("erin", "erin.e", "Erin", "O'Neil", T(0, 0, 5))
    U("frank", "frank", "Frank", "Former", T(0, 0, 6), deleted=T(20))       # deactivated
    U("grace", "grace_g", "Grace", "Guest", T(0, 0, 7), roles="system_guest")
    U("heidi", "heidi-ldap", "Heidi", "Hopper", T(0, 0, 8), auth=("ldap", "heidi"))
    U("zoe", "zoe", "Zoë", "Zhang", T(0, 0, 9), locale="de")
    U("bot", "buildbot", "Build Bot", "", T(0, 0, 10), picture=True,
      bot={"description": "CI notifications", "owner": "admin"})

    acme_members = ["admin", "alice", "bob", "carol", "dave", "erin", "frank", "heidi", "zoe", "bot"]
    w.add_team("acme", "acme", "Acme Corp", "O", T(0, 1), acme_members, admins={"admin", "alice"}, icon=True)
    w.add_team("skunk", "skunkworks", "Skunk Works", "I", T(0, 1, 5), ["admin", "alice", "bob", "dave", "grace", "zoe"],
               admins={"alice"}, left={"dave": T(9)})

    ts = w.add_channel("ts", "acme", "O", "town-square", "Town Square", "admin", T(0, 2))
    ot = w.add_channel("ot", "acme", "O", "off-topic", "Off Topic", "admin", T(0, 2, 1))
    eng = w.add_channel("eng", "acme", "P", "engineering", "Engineering", "alice", T(0, 2, 2),
                        header="Build all the things :hammer:", purpose="Engineering team")
    old = w.add_channel("old", "acme", "O", "old-project", "Old Project", "alice", T(0, 2, 3),
                        header="Legacy stuff", purpose="Archived project")
    sts = w.add_channel("sts", "skunk", "O", "town-square", "Town Square", "admin", T(0, 2, 4))
    sec = w.add_channel("sec", "skunk", "P", "secret-plans", "Secret Plans", "alice", T(0, 2, 5),
                        purpose="Top secret")

    # --- memberships (with system posts as Mattermost writes them) ---
    for i, u in enumerate(["admin", "alice", "bob", "carol", "dave", "erin", "frank", "zoe", "bot"]):
        w.join("ts", u, T(1, 0, i), admin=u == "admin", sys="join" if u in ("alice", "bob") else None)
    for i, u in enumerate(["admin", "alice", "bob", "carol", "dave", "zoe"]):
        w.join("ot", u, T(1, 1, i))
    w.join("eng", "alice", T(1, 2), admin=True)
    for i, u in enumerate(["bob", "carol", "dave"]):
        w.join("eng", u, T(1, 2, 1 + i), sys="add", by="alice")
    w.join("old", "alice", T(1, 3), admin=True)
    w.join("old", "bob", T(1, 3, 1))
    for i, u in enumerate(["admin", "alice", "bob", "grace", "zoe"]):
        w.join("sts", u, T(1, 4, i))
    w.join("sec", "alice", T(1, 5), admin=True)
    w.join("sec", "zoe", T(1, 5, 1), sys="add", by="alice")
    w.join("sec", "grace", T(1, 5, 2), sys="add", by="alice")

    dm = w.add_dm("dm_ab", "alice", "bob", T(1, 6))
    w.add_dm("dm_self", "alice", "alice", T(1, 6, 1))
    w.add_gm("gm", ["alice", "bob", "carol"], T(1, 6, 2))
    w.add_dm("dm_bot", "admin", "bot", T(1, 6, 3))
    w.add_dm("dm_bf", "bob", "frank", T(1, 6, 4))

    # --- custom emoji ---
    parrot = w.add_emoji("partyparrot", "partyparrot", "alice", T(1, 7), animated_gif(16, 16, [
        lambda x, y: (x * 16 + y) % 256, lambda x, y: (x * 16 + y + 128) % 256]))
    w.add_emoji("shipit", "shipit", "bob", T(1, 7, 1), gradient_png(32, 32, (120, 60, 0)))
    w.add_emoji("oldlogo", "oldlogo", "admin", T(1, 7, 2), gradient_png(32, 32, (0, 0, 0)), deleted=T(5))
    assert parrot

    P = w.add_post
    # --- town-square: thread, reactions, edits, same-ms posts, system/webhook/me/markdown ---
    welcome = P("ts", "alice", "Welcome to **Acme**! :wave: Please read the "
                "[handbook](https://example.com/handbook) first.", T(2, 9), pinned=True)
    P("ts", "bob", "Thanks @alice! :+1:", T(2, 9, 5), root=welcome)
    P("ts", "carol", "Glad to be here :smile:", T(2, 9, 6), root=welcome)
    P("ts", "alice", "@bob @carol see ~off-topic for the fun stuff", T(2, 9, 7), root=welcome)
    P("ts", "frank", "Hi all, Frank here (for now).", T(2, 9, 8), root=welcome)
    w.react(welcome, "bob", "+1", T(2, 9, 10))
    w.react(welcome, "carol", "+1_light_skin_tone", T(2, 9, 11))
    w.react(welcome, "dave", "heart", T(2, 9, 12))
    w.react(welcome, "erin", "partyparrot", T(2, 9, 13))
    w.react(welcome, "frank", "tada", T(2, 9, 14), removed=T(2, 9, 20))
    hello = P("ts", "bob", "Helo wrld", T(2, 10))
    w.edit(hello, "Hello world", T(2, 10, 1))
    w.update(hello, T(2, 10, 1, 30), pinned=True)    # history rows that are not edits
    w.edit(hello, "Hello, world!", T(2, 10, 2))
    w.update(hello, T(2, 10, 2, 30), pinned=False)
    w.react(hello, "alice", "smile", T(2, 10, 3))
    same_a = P("ts", "carol", "Two posts in the same millisecond (A)", T(2, 11))
    same_b = P("ts", "dave", "Two posts in the same millisecond (B)", T(2, 11))
    assert same_a["createat"] == same_b["createat"]
    P("ts", "admin", "", T(2, 12), type="slack_attachment", props={
        "from_webhook": "true", "override_username": "ci-notifier",
        "override_icon_url": "https://example.com/ci.png", "webhook_display_name": "CI",
        "attachments": [{"fallback": "Build #41 failed", "color": "#FF0000", "pretext": "Nightly build",
                         "author_name": "Jenkins", "author_link": "https://ci.example.com",
                         "title": "Build #41 failed", "title_link": "https://ci.example.com/41",
                         "text": "3 tests failed in `core`", "fields": [
                             {"title": "Branch", "value": "main", "short": True},
                             {"title": "Duration", "value": "12m", "short": True}],
                         "footer": "Jenkins", "id": 0}]})
    P("ts", "erin", "Hey @channel, standup notes for ~engineering :memo: :shipit:\n\n"
      "```rust\nfn main() {\n    println!(\"hello\");\n}\n```\n\n"
      f"Context: {site}/acme/pl/{welcome['id']} and #standup with @bob. and @nobody", T(2, 13),
      hashtags="#standup", props={"channel_mentions": {"engineering": {
          "display_name": "Engineering", "team_name": "acme"}}})
    P("ts", "bob", "*is heading to lunch*", T(2, 14), type="me")
    oops = P("ts", "dave", "oops, wrong channel", T(2, 15))
    w.delete(oops, T(2, 15, 1), "dave")
    poll = P("ts", "carol", "Poll: pizza or tacos?", T(2, 16))
    P("ts", "bob", "tacos", T(2, 16, 1), root=poll)
    P("ts", "dave", "pizza", T(2, 16, 2), root=poll)
    w.delete(poll, T(2, 17), "admin")    # deleting a root deletes its replies
    ghost = P("ts", w.id("user/ghost"), "message from a user that no longer exists", T(2, 18))
    w.anomalies["missing_user"].append(ghost["id"])
    lost = P("ts", "alice", "see attached (file lost)", T(2, 19), file_ids=[w.id("file/lost")])
    w.anomalies["missing_file"].append(lost["id"])
    urgent = P("ts", "admin", "Server maintenance tonight at 22:00 UTC", T(2, 20), pinned=True)
    w.rows["postspriority"].append(dict(postid=urgent["id"], channelid=urgent["channelid"], priority="urgent",
                                        requestedack=True, persistentnotifications=False))
    P("ts", "admin", "Ack", T(2, 20, 5), root=urgent)
    deployed = P("ts", "bot", "Deploy finished :white_check_mark:", T(2, 21), props={"from_bot": "true"})
    w.join("ts", "heidi", T(3), sys="add", by="admin")
    P("ts", "heidi", "Hi! Heidi from LDAP land. Grüße 👋", T(3, 0, 1))

    # --- off-topic: header/purpose/displayname changes, leave + rejoin, orphan reply, ties ---
    w.add_post("ot", "alice", "alice updated the channel header from:  to: Random stuff", T(2, 9),
               type="system_header_change", props={"username": "alice", "old_header": "", "new_header": "Random stuff"})
    ot["header"] = "Random stuff"
    w.add_post("ot", "alice", "alice updated the channel purpose from:  to: Non-work banter", T(2, 9, 1),
               type="system_purpose_change", props={"username": "alice", "old_purpose": "",
                                                   "new_purpose": "Non-work banter"})
    ot["purpose"] = "Non-work banter"
    w.add_post("ot", "admin", "sysadmin updated the channel display name from: Off Topic to: Off-Topic", T(2, 9, 2),
               type="system_displayname_change", props={"username": "sysadmin", "old_displayname": "Off Topic",
                                                       "new_displayname": "Off-Topic"})
    ot["displayname"] = "Off-Topic"
    w.join("ot", "erin", T(2, 10), sys="join")
    P("ot", "erin", "Anyone for coffee? :coffee:", T(2, 10, 1))
    w.leave("ot", "erin", T(2, 11))
    w.join("ot", "erin", T(4), sys="join")
    cat = P("ot", "zoe", "Katzenbilder-Thread 🐱", T(4, 1))
    P("ot", "bob", "🐈", T(4, 1, 1), root=cat)
    P("ot", "carol", "Same millisecond as a root post", T(4, 2), root=cat)
    P("ot", "dave", "A root post at the same millisecond as a reply", T(4, 2))
    orphan = P("ot", "dave", "reply whose root was never stored", T(4, 3), root=w.id("post/missing-root"))
    w.anomalies["orphan_reply"].append(orphan["id"])
    P("ot", "zoe", "> quoted\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n~~strike~~ and ![img](https://example.com/x.png)",
      T(4, 4))

    # --- engineering (private): files, pins, admin adds, a member who left ---
    diagram = P("eng", "alice", "Architecture diagram attached", T(2, 9), pinned=True,
                files=[("diagram.png", "image/png", gradient_png(320, 200, (30, 60, 90)))])
    P("eng", "bob", "Spec as PDF", T(2, 9, 3), root=diagram,
      files=[("spec.pdf", "application/pdf", tiny_pdf("Transition plan"))])
    P("eng", "carol", "Standup recording + notes", T(2, 10),
      files=[("standup.wav", "audio/wav", wav()), ("notes.txt", "text/plain", "line 1\nline 2\n".encode())])
    leak = P("eng", "dave", "secret screenshot", T(2, 11),
             files=[("secret.png", "image/png", gradient_png(40, 30, (255, 0, 0)))])
    w.delete(leak, T(2, 11, 5), "alice")
    w.react(diagram, "bob", "shipit", T(2, 12))
    w.react(diagram, "carol", "oldlogo", T(2, 12, 1))   # custom emoji that was deleted later
    w.leave("eng", "dave", T(3, 5))
    w.join("eng", "erin", T(3, 6), sys="add", by="alice")
    P("eng", "erin", "Thanks for adding me, @alice", T(3, 6, 1))

    # --- archived channel (old files with real team id in the path) ---
    P("old", "alice", "Kick-off notes", T(2, 9),
      files=[("kickoff.png", "image/png", gradient_png(64, 48, (90, 90, 0)), None, True)])
    P("old", "bob", "Wrapping this up", T(3, 9))
    P("old", "alice", "alice archived the channel", T(5), type="system_channel_deleted",
      props={"username": "alice"})
    old["deleteat"] = T(5)

    # --- skunkworks ---
    P("sts", "zoe", "Grüße aus Berlin 👋 — 日本語テキスト — emoji: 🦀", T(2, 9))
    guest = P("sts", "grace", "Guest here, hello!", T(2, 9, 1))
    plan = P("sec", "alice", "Plan A: *world domination*", T(2, 10))
    P("sec", "zoe", "Plan B: cake :cake:", T(2, 10, 1), root=plan)
    P("sec", "grace", "+1 for cake", T(2, 10, 2), root=plan)
    w.react(plan, "zoe", "thinking_face", T(2, 10, 3))   # a Mattermost name gemoji does not have

    # --- direct and group messages ---
    hi = P("dm_ab", "alice", "Hey Bob, got a minute?", T(2, 9))
    P("dm_ab", "bob", "Sure, what's up?", T(2, 9, 1), root=hi)
    P("dm_ab", "alice", "Photo from the offsite", T(2, 9, 2),
      files=[("offsite.png", "image/png", gradient_png(200, 150, (10, 200, 10)))])
    w.react(hi, "bob", "thumbsup", T(2, 9, 3))
    P("dm_self", "alice", "Note to self: remember the milk 🥛", T(2, 10))
    g = P("gm", "carol", "Group chat: lunch on Friday?", T(2, 11))
    P("gm", "bob", "I'm in", T(2, 11, 1))
    P("gm", "alice", "Me too", T(2, 11, 2), pinned=True)
    w.react(g, "alice", "+1", T(2, 11, 3))
    P("dm_bot", "bot", "Build #42 passed :white_check_mark:", T(2, 12), props={"from_bot": "true"})
    P("dm_bf", "frank", "Bob, I'm leaving the company next month.", T(3))
    P("dm_bf", "bob", "Sad to hear, good luck!", T(3, 0, 1))

    # --- updates that are not edits: never-edited posts with history rows ---
    w.update(guest, T(3, 2), pinned=True)
    w.update(deployed, T(3, 2, 1), props={"from_bot": "true", "disable_group_highlight": True})

    # --- preferences and sidebar ---
    w.pref("alice", "favorite_channel", eng["id"], "true")
    w.pref("alice", "direct_channel_show", w.uid("bob"), "true")
    w.pref("alice", "direct_channel_show", w.uid("alice"), "true")
    w.pref("alice", "group_channel_show", w.channels["gm"]["id"], "true")
    w.pref("alice", "flagged_post", welcome["id"], "true")
    w.pref("alice", "display_settings", "use_military_time", "true")
    w.pref("bob", "favorite_channel", ts["id"], "true")
    w.pref("bob", "favorite_channel", dm["id"], "true")
    w.pref("bob", "direct_channel_show", w.uid("alice"), "true")
    w.pref("bob", "direct_channel_show", w.uid("frank"), "false")
    w.pref("carol", "group_channel_show", w.channels["gm"]["id"], "true")
    w.sidebar("alice", "acme", favorites=["eng"], channels=["ts", "ot", "old"], dms=["dm_ab", "dm_self", "gm"])
    w.sidebar("bob", "acme", favorites=["ts", "dm_ab"], channels=["ot", "eng", "old"], dms=["gm", "dm_bf"])
    # A channel younger than its members and posts, as Mattermost's own bulk import (and so a
    # Slack move through mmetl) leaves one: it creates channels at import time and keeps the
    # posts' times. The import must keep them too.
    sec["createat"] = sec["updateat"] = T(4)
    w.finalize()


def build_common(w, version, config):
    w.rows["systems"] += [dict(name="Version", value=version), dict(name="DiagnosticId", value=w.id("diag")),
                          dict(name="InstallationDate", value=str(T(0))),
                          dict(name="AdvancedPermissionsMigrationComplete", value="true")]
    w.rows["db_migrations"] += [dict(version=int(m.split("_")[0]), name=m.split("_", 1)[1]) for m in MIGRATIONS]
    cfg = jdump(config)
    w.rows["configurations"].append(dict(id=w.id("config"), value=cfg, createat=T(0), active=True,
                                         sha=hashlib.sha256(cfg.encode()).hexdigest()))


# ---------------------------------------------------------------------------------------------
# fixture.json: what the tests assert against

def live(p):
    return p["deleteat"] == 0 and p["originalid"] == ""


def summarize(w):
    R = w.rows
    uname = {r["id"]: r["username"] for r in R["users"]}
    bots = {r["userid"] for r in R["bots"]}
    team_name = {t["id"]: t["name"] for t in R["teams"]}
    posts_by_c = defaultdict(list)
    for p in R["posts"]:
        posts_by_c[p["channelid"]].append(p)
    reactions_by_p = defaultdict(list)
    for r in R["reactions"]:
        reactions_by_p[r["postid"]].append(r)
    files_by_c = defaultdict(list)
    for f in R["fileinfo"]:
        files_by_c[f["channelid"]].append(f)
    members = defaultdict(list)
    for m in R["channelmembers"]:
        members[m["channelid"]].append(m)
    hist = defaultdict(list)
    for h in R["channelmemberhistory"]:
        hist[h["channelid"]].append(h)
    chans = []
    for c in sorted(R["channels"], key=lambda c: (team_name.get(c["teamid"], "~"), c["type"], c["name"])):
        ps = posts_by_c[c["id"]]
        lv = sorted([p for p in ps if live(p)], key=lambda p: (p["createat"], p["id"]))
        ids = {p["id"] for p in lv}
        reacts = [r for p in lv for r in reactions_by_p[p["id"]]]
        fs = files_by_c[c["id"]]
        anomalies = {k: [i for i in v if i in ids] for k, v in w.anomalies.items()}
        chans.append({
            "id": c["id"], "team": team_name.get(c["teamid"]), "team_id": c["teamid"], "type": c["type"],
            "name": c["name"], "display_name": c["displayname"], "header": c["header"], "purpose": c["purpose"],
            "archived": c["deleteat"] > 0, "deleteat": c["deleteat"], "creator": uname.get(c["creatorid"]),
            "members": sorted(uname[m["userid"]] for m in members[c["id"]]),
            "admins": sorted(uname[m["userid"]] for m in members[c["id"]] if m["schemeadmin"]),
            "history": sorted([{"user": uname[h["userid"]], "join": h["jointime"], "leave": h["leavetime"]}
                               for h in hist[c["id"]]], key=lambda h: (h["join"], h["user"])),
            "counts": {
                "live_posts": len(lv),
                "roots": sum(1 for p in lv if not p["rootid"]),
                "replies": sum(1 for p in lv if p["rootid"]),
                "system_posts": sum(1 for p in lv if p["type"].startswith("system_")),
                "reactions": sum(1 for r in reacts if not r["deleteat"]),
                "removed_reactions": sum(1 for r in reacts if r["deleteat"]),
                "edited": sum(1 for p in lv if p["editat"]),
                "edit_history_rows": sum(1 for p in ps if p["originalid"]),
                "deleted": sum(1 for p in ps if p["deleteat"] and not p["originalid"]),
                "pinned": sum(1 for p in lv if p["ispinned"]),
                "files": sum(1 for f in fs if not f["deleteat"] and f["postid"] in ids),
                "deleted_files": sum(1 for f in fs if f["deleteat"]),
                "all_post_rows": len(ps),
            },
            "post_ids": [p["id"] for p in lv],
            "posts": [{"id": p["id"], "type": p["type"], "user": uname.get(p["userid"]), "root": p["rootid"],
                       "create_at": p["createat"], "message": p["message"], "file_ids": json.loads(p["fileids"]),
                       "reactions": sorted([uname.get(r["userid"]), r["emojiname"]]
                                           for r in reactions_by_p[p["id"]] if not r["deleteat"])}
                      for p in lv],
            "pinned_ids": [p["id"] for p in lv if p["ispinned"]],
            "anomalies": {k: v for k, v in anomalies.items() if v},
        })
    edits, updated = [], []
    for p in R["posts"]:
        hs = sorted([q for q in R["posts"] if q["originalid"] == p["id"]], key=lambda q: q["deleteat"])
        if live(p) and p["editat"]:
            # What Matrix shows: each text once, at the time it replaced the one before (history rows
            # of pins and other updates keep the text: not versions).
            history = [q["message"] for q in hs] + [p["message"]]
            versions, times = [history[0]], [p["createat"]]
            for i, q in enumerate(hs):
                if history[i + 1] != history[i]:
                    versions.append(history[i + 1])
                    times.append(q["deleteat"])
            edits.append({"id": p["id"], "versions": versions, "times": times, "history": history})
        elif live(p) and hs:
            updated.append(p["id"])
    return {
        "seed": w.seed, "site_url": w.site_url,
        "teams": [{"id": t["id"], "name": t["name"], "display_name": t["displayname"], "type": t["type"]}
                  for t in R["teams"]],
        "users": [{"id": u["id"], "username": u["username"], "email": u["email"],
                   "display_name": (u["firstname"] + " " + u["lastname"]).strip(), "deactivated": u["deleteat"] > 0,
                   "bot": u["id"] in bots, "system_admin": "system_admin" in u["roles"],
                   "guest": "system_guest" in u["roles"], "auth_service": u["authservice"],
                   "profile_picture": f"users/{u['id']}/profile.png" if u["lastpictureupdate"] else None}
                  for u in R["users"]],
        "channels": chans,
        "direct": [{"id": c["id"], "type": c["type"], "name": c["name"], "members": c["members"]}
                   for c in chans if c["type"] in "DG"],
        "edits": edits,
        "updated_not_edited": updated,
        "emoji": [{"id": e["id"], "name": e["name"], "deleted": e["deleteat"] > 0,
                   "path": f"emoji/{e['id']}/image" + ("_deleted" if e["deleteat"] else "")} for e in R["emoji"]],
        "files": [{"id": f["id"], "post_id": f["postid"], "channel_id": f["channelid"], "path": f["path"],
                   "thumbnail_path": f["thumbnailpath"], "preview_path": f["previewpath"], "name": f["name"],
                   "mime_type": f["mimetype"], "size": f["size"], "width": f["width"], "height": f["height"],
                   "deleted": f["deleteat"] > 0} for f in R["fileinfo"]],
        "anomalies": dict(w.anomalies),
        "totals": {t: len(R.get(t) or []) for t, _, _ in TABLES},
    }


# ---------------------------------------------------------------------------------------------
# mmctl-style bulk export (as `mmctl export create --include-archived-channels
# --include-profile-pictures`, attachments included)

def build_export(w, version):
    R = w.rows
    users = {u["id"]: u for u in R["users"]}
    uname = {u["id"]: u["username"] for u in R["users"]}
    bots = {b["userid"]: b for b in R["bots"]}
    teams = {t["id"]: t for t in R["teams"]}
    chans = {c["id"]: c for c in R["channels"]}
    cmembers = defaultdict(list)
    for m in R["channelmembers"]:
        cmembers[m["channelid"]].append(m)
    fav = {(p["userid"], p["name"]) for p in R["preferences"] if p["category"] == "favorite_channel" and p["value"] == "true"}
    flagged = defaultdict(list)
    for p in R["preferences"]:
        if p["category"] == "flagged_post" and p["value"] == "true":
            flagged[p["name"]].append(uname[p["userid"]])
    files = {f["id"]: f for f in R["fileinfo"]}
    reacts = defaultdict(list)
    for r in R["reactions"]:
        if not r["deleteat"] and r["userid"] in users:
            reacts[r["postid"]].append(r)
    replies = defaultdict(list)
    for p in R["posts"]:
        if live(p) and p["rootid"] and p["userid"] in users:
            replies[p["rootid"]].append(p)
    lines = [{"type": "version", "version": 1, "info": {
        "generator": "mattermost-server", "version": f"{version} (transition-matrix-fixture, enterprise: false)",
        "created": "2024-03-31T12:00:00.000000000Z"}}]
    for t in sorted(R["teams"], key=lambda t: t["id"]):
        if not t["deleteat"]:
            lines.append({"type": "team", "team": {"name": t["name"], "display_name": t["displayname"],
                                                   "type": t["type"], "description": t["description"],
                                                   "allow_open_invite": t["allowopeninvite"]}})
    for c in sorted(R["channels"], key=lambda c: c["id"]):
        if c["type"] in "OP":
            lines.append({"type": "channel", "channel": {
                "team": teams[c["teamid"]]["name"], "name": c["name"], "display_name": c["displayname"],
                "type": c["type"], "header": c["header"], "purpose": c["purpose"], "deleted_at": c["deleteat"]}})
    pictures = []
    for u in sorted(R["users"], key=lambda u: u["id"]):
        if u["lastpictureupdate"]:
            pictures.append(f"users/{u['id']}/profile.png")
        if u["id"] in bots:
            continue
        tms = []
        for tm in sorted(R["teammembers"], key=lambda m: m["teamid"]):
            if tm["userid"] != u["id"] or tm["deleteat"]:
                continue
            chs = []
            for c in sorted(R["channels"], key=lambda c: c["id"]):
                m = next((m for m in cmembers[c["id"]] if m["userid"] == u["id"]), None)
                if c["teamid"] != tm["teamid"] or m is None:
                    continue
                chs.append({"name": c["name"],
                            "roles": "channel_guest" if m["schemeguest"] else
                            "channel_user" + (" channel_admin" if m["schemeadmin"] else ""),
                            "notify_props": {"desktop": "default", "mobile": "default", "mark_unread": "all",
                                             "email": "default", "ignore_channel_mentions": "default"},
                            "favorite": (u["id"], c["id"]) in fav, "mention_count": 0,
                            "msg_count": m["msgcount"], "last_viewed_at": m["lastviewedat"]})
            tms.append({"name": teams[tm["teamid"]]["name"],
                        "roles": "team_guest" if tm["schemeguest"] else
                        "team_user" + (" team_admin" if tm["schemeadmin"] else ""), "channels": chs})
        ud = {"username": u["username"], "email": u["email"], "auth_service": u["authservice"],
              "nickname": u["nickname"], "first_name": u["firstname"], "last_name": u["lastname"],
              "position": u["position"], "roles": u["roles"], "locale": u["locale"], "delete_at": u["deleteat"]}
        if u["authdata"]:
            ud["auth_data"] = u["authdata"]
        if u["lastpictureupdate"]:
            ud["profile_image"] = f"users/{u['id']}/profile.png"
        n = u["notifyprops"]
        ud["notify_props"] = {"desktop": n["desktop"], "desktop_sound": n["desktop_sound"], "email": n["email"],
                              "mobile": n["push"], "mobile_push_status": n["push_status"], "channel": n["channel"],
                              "comments": n["comments"], "mention_keys": n["mention_keys"]}
        ud["teams"] = tms
        lines.append({"type": "user", "user": ud})
    for b in sorted(R["bots"], key=lambda b: b["userid"]):
        u = users[b["userid"]]
        bd = {"username": u["username"], "owner": uname.get(b["ownerid"], b["ownerid"]),
              "display_name": u["firstname"], "description": b["description"], "delete_at": b["deleteat"]}
        if u["lastpictureupdate"]:
            bd["profile_image"] = f"users/{u['id']}/profile.png"
        lines.append({"type": "bot", "bot": bd})

    attachments = []

    def body(p, reply=False):
        d = {"user": uname[p["userid"]], "type": p["type"], "message": p["message"], "props": p["props"],
             "create_at": p["createat"], "edit_at": p["editat"], "is_pinned": p["ispinned"]}
        if flagged.get(p["id"]):
            d["flagged_by"] = flagged[p["id"]]
        if not reply or reacts[p["id"]]:
            d["reactions"] = [{"user": uname[r["userid"]], "emoji_name": r["emojiname"], "create_at": r["createat"]}
                              for r in sorted(reacts[p["id"]], key=lambda r: r["createat"])]
        fids = json.loads(p["fileids"])
        if fids:
            att = [{"path": files[f]["path"]} for f in fids if f in files and not files[f]["deleteat"]]
            d["attachments"] = att
            attachments.extend(a["path"] for a in att)
        if not reply:
            rs = [body(q, True) for q in sorted(replies[p["id"]], key=lambda q: q["id"])]
            d["replies"] = rs or None
        return d

    roots = sorted([p for p in R["posts"] if live(p) and not p["rootid"] and p["userid"] in users],
                   key=lambda p: p["id"])
    for p in roots:
        c = chans[p["channelid"]]
        if c["type"] in "OP":
            lines.append({"type": "post", "post": dict(team=teams[c["teamid"]]["name"], channel=c["name"], **body(p))})
    for e in sorted(R["emoji"], key=lambda e: e["name"]):
        if not e["deleteat"]:
            lines.append({"type": "emoji", "emoji": {"name": e["name"], "image": f"emoji/{e['id']}/image"}})

    def dm_members(c):
        ms = sorted(uname[m["userid"]] for m in cmembers[c["id"]])
        return ms * 2 if c["type"] == "D" and len(ms) == 1 else ms
    for c in sorted(R["channels"], key=lambda c: c["id"]):
        if c["type"] in "DG" and not c["deleteat"]:
            ms = dm_members(c)
            lines.append({"type": "direct_channel", "direct_channel": {
                "members": ms, "participants": [{"username": m} for m in ms],
                "favorited_by": sorted(uname[u] for u, ch in fav if ch == c["id"]) or None,
                "header": c["header"]}})
    for p in roots:
        c = chans[p["channelid"]]
        if c["type"] in "DG":
            lines.append({"type": "direct_post", "direct_post": dict(channel_members=dm_members(c), **body(p))})
    emoji = [f"emoji/{e['id']}/image" for e in sorted(R["emoji"], key=lambda e: e["name"]) if not e["deleteat"]]
    return lines, attachments + emoji + pictures


def write_zip(path, lines, data_paths, store):
    stamp = (2024, 3, 31, 12, 0, 0)
    with zipfile.ZipFile(path, "w") as z:
        zi = zipfile.ZipInfo("import.jsonl", stamp)
        zi.compress_type = zipfile.ZIP_DEFLATED
        zi.external_attr = 0o644 << 16
        z.writestr(zi, "".join(json.dumps(l, ensure_ascii=False, separators=(",", ":")) + "\n" for l in lines))
        seen = set()
        for p in data_paths:
            if p in seen:
                continue
            seen.add(p)
            zi = zipfile.ZipInfo("data/" + p, stamp)
            zi.compress_type = zipfile.ZIP_STORED
            zi.external_attr = 0o644 << 16
            z.writestr(zi, store[p])


def make_config(args, files_dir, driver):
    if driver == "postgres":
        dsn = (f"postgres://mmuser:mostest@127.0.0.1:{args.pg_port}/{args.db_name}"
               "?sslmode=disable&connect_timeout=10&binary_parameters=yes")
    else:
        dsn = (f"mmuser:mostest@tcp(127.0.0.1:{args.mysql_port})/{args.db_name}"
               "?charset=utf8mb4,utf8&readTimeout=30s&writeTimeout=30s")
    return {
        "ServiceSettings": {"SiteURL": args.site_url, "ListenAddress": ":8065", "EnableUserAccessTokens": True},
        "TeamSettings": {"SiteName": "Acme Chat", "TeammateNameDisplay": "username", "MaxUsersPerTeam": 50},
        "SqlSettings": {"DriverName": driver, "DataSource": dsn, "DataSourceReplicas": [],
                        "DataSourceSearchReplicas": [], "MaxIdleConns": 20, "MaxOpenConns": 300,
                        "QueryTimeout": 30, "AtRestEncryptKey": "k7t1b3ycm9bw8ydq6k1o3cqk6xqh1zt9"},
        "FileSettings": {"DriverName": "local", "Directory": files_dir.rstrip("/") + "/", "MaxFileSize": 104857600,
                         "EnablePublicLink": False, "AmazonS3AccessKeyId": "", "AmazonS3SecretAccessKey": "",
                         "AmazonS3Bucket": "", "AmazonS3PathPrefix": "", "AmazonS3Region": "",
                         "AmazonS3Endpoint": "s3.amazonaws.com", "AmazonS3SSL": True, "AmazonS3SignV2": False,
                         "AmazonS3SSE": False},
        "ExportSettings": {"Directory": "./export", "RetentionDays": 30},
    }


# ---------------------------------------------------------------------------------------------
# benchmark world: N posts over ~90 channels, PostgreSQL COPY only, no file contents

WORDS = ("the a deploy build test release merge review fix bug feature api server client database query "
         "index cache latency meeting standup lunch coffee today tomorrow please thanks ok sure lgtm "
         "matrix mattermost import export room thread reply channel team user file image docs spec plan "
         "ship it :+1: :tada: :eyes: @here `code` **bold** _italic_ https://example.com/x 🚀 ü ß").split()
EMOJI = ["+1", "heart", "smile", "tada", "eyes", "rocket", "white_check_mark", "joy", "pray", "fire",
         "+1_medium_skin_tone", "partyparrot"]


def build_bench(w, n, out, rng):
    for i in range(300):
        w.add_user(f"u{i}", f"user{i:03d}", f"First{i}", f"Last{i}", T(0, 0, i // 60, i % 60),
                   deleted=T(200) if i % 97 == 13 else 0,
                   bot={"description": "bench bot", "owner": "u0"} if i in (7, 77, 177) else None)
    keys = list(w.users)
    w.add_team("t1", "bench-one", "Bench One", "O", T(0, 1), keys[:200], admins={"u0"})
    w.add_team("t2", "bench-two", "Bench Two", "I", T(0, 1), keys[100:], admins={"u100"})
    w.add_emoji("partyparrot", "partyparrot", "u0", T(0, 2), gradient_png(8, 8, (1, 2, 3)))
    for tkey, tusers in (("t1", keys[:200]), ("t2", keys[100:])):
        specs = [("town-square", "O", len(tusers))] + [(f"public-{k:02d}", "O", rng.randint(5, 80)) for k in range(15)] \
            + [(f"private-{k:02d}", "P", rng.randint(3, 30)) for k in range(5)] + [("archived", "O", 10)]
        for name, typ, size in specs:
            key = f"{tkey}/{name}"
            w.add_channel(key, tkey, typ, name, name.replace("-", " ").title(), tusers[0], T(0, 3))
            for j, u in enumerate(sorted(rng.sample(tusers, min(size, len(tusers))))):
                w.join(key, u, T(0, 4, 0, j))
    for k in range(40):
        a, b = rng.sample(keys, 2)
        if f"dm/{min(a, b)}/{max(a, b)}" not in w.channels:
            w.add_dm(f"dm/{min(a, b)}/{max(a, b)}", a, b, T(0, 5, k))
    for k in range(8):
        w.add_gm(f"gm/{k}", rng.sample(keys, rng.randint(3, 5)), T(0, 6, k))
    chans = w.rows["channels"]
    members = [sorted(w.members[c["id"]]) for c in chans]
    weights = [1.0 / (i + 1) ** 0.8 for i in range(len(chans))]
    rng.shuffle(weights)
    picks = rng.choices(range(len(chans)), weights=weights, k=n)
    step = max(1, 300 * 86400000 // max(n, 1))
    t = T(10)
    tmp = {name: open(os.path.join(out, f".{name}.copy"), "w", encoding="utf-8")
           for name in ("posts", "reactions", "threads", "fileinfo")}
    recent = [[] for _ in chans]
    threads = {}
    counts = {c["id"]: [0, 0, c["createat"], c["createat"]] for c in chans}
    stats = defaultdict(int)
    esc = pg_copy_escape
    for i in range(n):
        ci = picks[i]
        c = chans[ci]
        if rng.random() >= 0.01:
            t += rng.randint(1, 2 * step)
        uid = rng.choice(members[ci])
        pid = mmid(w.seed, f"bench/post/{i}")
        root = ""
        if recent[ci] and rng.random() < 0.3:
            root = rng.choice(recent[ci][-20:])
        msg = " ".join(rng.choices(WORDS, k=rng.randint(2, 30)))
        if rng.random() < 0.05:
            msg += "\n\n```\nsome code\n\tindented\n```"
        deleted = rng.random() < 0.01
        editat = t + 120000 if not deleted and rng.random() < 0.03 else 0
        pinned = not deleted and rng.random() < 0.001
        fids = []
        if rng.random() < 0.02:
            fid = mmid(w.seed, f"bench/file/{i}")
            fids.append(fid)
            path = f"{ymd(t)}/teams/noteam/channels/{c['id']}/users/{uid}/{fid}/report-{i}.pdf"
            tmp["fileinfo"].write(f"{fid}\t{uid}\t{pid}\t{t}\t{t}\t{t + 60000 if deleted else 0}\t{path}\t\t\t"
                                  f"report-{i}.pdf\tpdf\t{1000 + i % 5000}\tapplication/pdf\t0\t0\tf\t\\N\t\t\\N\tf\t{c['id']}\n")
            stats["fileinfo"] += 1
        has_reactions = False
        if not deleted and rng.random() < 0.1:
            seen = set()
            for _ in range(rng.randint(1, 3)):
                ru, em = rng.choice(members[ci]), rng.choice(EMOJI)
                if (ru, em) in seen:
                    continue
                seen.add((ru, em))
                rt = t + rng.randint(1000, 3600000)
                removed = rt + 5000 if rng.random() < 0.05 else 0
                has_reactions |= not removed
                tmp["reactions"].write(f"{ru}\t{pid}\t{em}\t{rt}\t{removed or rt}\t{removed}\t\\N\t{c['id']}\n")
                stats["reactions"] += 1
        props = jdump({"deleteBy": uid}) if deleted else "{}"
        fileids = jdump(fids)
        if editat:
            hid = mmid(w.seed, f"bench/hist/{i}")
            tmp["posts"].write(f"{hid}\t{t}\t{editat}\t{editat}\t{uid}\t{c['id']}\t{root}\t{pid}\t{esc(msg)}\t\t{props}"
                               f"\t\t[]\t{fileids}\tf\t0\tf\t\\N\n")
            msg = msg + " (edited)"
            stats["posts"] += 1
        tmp["posts"].write(f"{pid}\t{t}\t{editat or (t + 60000 if deleted else t)}\t{t + 60000 if deleted else 0}\t"
                           f"{uid}\t{c['id']}\t{root}\t\t{esc(msg)}\t\t{props}\t\t[]\t{fileids}\t"
                           f"{'t' if has_reactions else 'f'}\t{editat}\t{'t' if pinned else 'f'}\t\\N\n")
        stats["posts"] += 1
        if deleted:
            continue
        cnt = counts[c["id"]]
        cnt[0] += 1
        cnt[2] = t
        if root:
            th = threads[root]
            th[0] += 1
            th[1] = t
            if uid not in th[2]:
                th[2].append(uid)
        else:
            cnt[1] += 1
            cnt[3] = t
            recent[ci].append(pid)
            threads[pid] = [0, 0, [uid], c]
    for rid, (rc, last, parts, c) in threads.items():
        if rc:
            tmp["threads"].write(f"{rid}\t{rc}\t{last}\t{jdump(parts)}\t{c['id']}\t0\t{c['teamid']}\n")
            stats["threads"] += 1
    for f in tmp.values():
        f.close()
    w.counts = counts
    w.finalize()
    return stats


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--files-dir", help="final absolute path of the file store (default OUT/data)")
    ap.add_argument("--seed", default="transition-matrix")
    ap.add_argument("--posts", type=int, default=0, help="benchmark world with N posts (PostgreSQL only)")
    ap.add_argument("--pg-only", action="store_true")
    ap.add_argument("--db-name", default="mattermost")
    ap.add_argument("--pg-port", type=int, default=15432)
    ap.add_argument("--mysql-port", type=int, default=13306)
    ap.add_argument("--site-url", default="https://chat.example.test")
    args = ap.parse_args()
    if args.posts > 1_000_000:
        ap.error("--posts is limited to 1000000")
    out = args.out
    os.makedirs(out, exist_ok=True)
    files_dir = os.path.abspath(args.files_dir or os.path.join(out, "data"))
    version = "10.11.0"
    w = World(args.seed, args.site_url)
    cfg_pg = make_config(args, files_dir, "postgres")
    if args.posts:
        stats = build_bench(w, args.posts, out, random.Random(args.seed))
        build_common(w, version, cfg_pg)
        with open(os.path.join(out, "pg-data.sql"), "w", encoding="utf-8") as f:
            write_pg(w.rows, f)
            for table in ("posts", "reactions", "threads", "fileinfo"):
                f.write(pg_copy_header(table))
                with open(os.path.join(out, f".{table}.copy"), encoding="utf-8") as part:
                    while True:
                        buf = part.read(1 << 22)
                        if not buf:
                            break
                        f.write(buf)
                f.write("\\.\n")
                os.remove(os.path.join(out, f".{table}.copy"))
        with open(os.path.join(out, "config.json"), "w") as f:
            json.dump(cfg_pg, f, indent=2)
        totals = {t: len(w.rows.get(t) or []) for t, _, _ in TABLES}
        for k, v in stats.items():
            totals[k] += v
        summary = {"seed": args.seed, "posts_requested": args.posts, "totals": totals,
                   "live_posts": sum(c[0] for c in w.counts.values()),
                   "channels": [{"id": c["id"], "name": c["name"], "type": c["type"], "team_id": c["teamid"],
                                 "live_posts": w.counts[c["id"]][0], "roots": w.counts[c["id"]][1]}
                                for c in w.rows["channels"]]}
        with open(os.path.join(out, "fixture.json"), "w") as f:
            json.dump(summary, f, indent=1, ensure_ascii=False)
        return

    build_small(w)
    build_common(w, version, cfg_pg)
    with open(os.path.join(out, "pg-data.sql"), "w", encoding="utf-8") as f:
        write_pg(w.rows, f)
    if not args.pg_only:
        cfg_my = make_config(args, files_dir, "mysql")
        cfg = jdump(cfg_my)
        my_rows = dict(w.rows, configurations=[dict(w.rows["configurations"][0], value=cfg,
                                                    sha=hashlib.sha256(cfg.encode()).hexdigest())])
        with open(os.path.join(out, "mysql-data.sql"), "w", encoding="utf-8") as f:
            write_mysql(my_rows, f)
        with open(os.path.join(out, "config-mysql.json"), "w") as f:
            json.dump(cfg_my, f, indent=2)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg_pg, f, indent=2)
    data = os.path.join(out, "data")
    for path, content in sorted(w.files.items()):
        full = os.path.join(data, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(content)
    lines, data_paths = build_export(w, version)
    name = f"{w.id('export-job')}_export.zip"
    os.makedirs(os.path.join(data, "export"), exist_ok=True)
    write_zip(os.path.join(data, "export", name), lines, data_paths, w.files)
    with open(os.path.join(out, "export-name"), "w") as f:
        f.write(name + "\n")
    summary = summarize(w)
    kinds = defaultdict(int)
    for l in lines:
        kinds[l["type"]] += 1
    summary["export"] = {"zip": f"export/{name}", "lines": dict(kinds),
                         "post_lines_with_replies": sum(1 + len(l[l["type"]].get("replies") or [])
                                                        for l in lines if l["type"] in ("post", "direct_post")),
                         "data_files": sorted(set(data_paths))}
    summary["files_dir"] = files_dir
    with open(os.path.join(out, "fixture.json"), "w") as f:
        json.dump(summary, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    sys.exit(main())
