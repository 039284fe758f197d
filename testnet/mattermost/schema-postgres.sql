-- Mattermost schema subset (PostgreSQL), as the importer sees it after the upstream migrations
-- 000001..000159 (see /work/shared/mattermost.md §2.2). Unquoted names => lower-case.
-- Only the tables the importer reads; columns and types as in information_schema of a
-- migrated database; a few of Mattermost's own indexes on posts/fileinfo/reactions.
SET client_min_messages = warning;

CREATE TYPE channel_type AS ENUM ('P', 'G', 'O', 'D');
CREATE TYPE team_type AS ENUM ('I', 'O');

CREATE TABLE users (
    id varchar(26) NOT NULL PRIMARY KEY,
    createat bigint,
    updateat bigint,
    deleteat bigint,
    username varchar(64) UNIQUE,
    password varchar(128),
    authdata varchar(128) UNIQUE,
    authservice varchar(32),
    email varchar(128) UNIQUE,
    emailverified boolean,
    nickname varchar(64),
    firstname varchar(64),
    lastname varchar(64),
    roles varchar(256),
    allowmarketing boolean,
    props jsonb,
    notifyprops jsonb,
    lastpasswordupdate bigint,
    lastpictureupdate bigint,
    failedattempts integer,
    locale varchar(5),
    mfaactive boolean,
    mfasecret varchar(128),
    position varchar(128),
    timezone jsonb,
    remoteid varchar(26),
    lastlogin bigint NOT NULL DEFAULT 0,
    mfausedtimestamps jsonb
);

CREATE TABLE bots (
    userid varchar(26) NOT NULL PRIMARY KEY,
    description varchar(1024),
    ownerid varchar(190),
    createat bigint,
    updateat bigint,
    deleteat bigint,
    lasticonupdate bigint
);

CREATE TABLE teams (
    id varchar(26) NOT NULL PRIMARY KEY,
    createat bigint,
    updateat bigint,
    deleteat bigint,
    displayname varchar(64),
    name varchar(64) UNIQUE,
    description varchar(255),
    email varchar(128),
    type team_type,
    companyname varchar(64),
    alloweddomains varchar(1000),
    inviteid varchar(32),
    schemeid varchar(26),
    allowopeninvite boolean,
    lastteamiconupdate bigint,
    groupconstrained boolean,
    cloudlimitsarchived boolean NOT NULL DEFAULT false
);

CREATE TABLE teammembers (
    teamid varchar(26) NOT NULL,
    userid varchar(26) NOT NULL,
    roles varchar(256),
    deleteat bigint,
    schemeuser boolean,
    schemeadmin boolean,
    schemeguest boolean,
    createat bigint DEFAULT 0,
    PRIMARY KEY (teamid, userid)
);
CREATE INDEX idx_teammembers_user_id ON teammembers (userid);

CREATE TABLE channels (
    id varchar(26) NOT NULL PRIMARY KEY,
    createat bigint,
    updateat bigint,
    deleteat bigint,
    teamid varchar(26),
    type channel_type,
    displayname varchar(64),
    name varchar(64),
    header varchar(1024),
    purpose varchar(250),
    lastpostat bigint,
    totalmsgcount bigint,
    extraupdateat bigint,
    creatorid varchar(26),
    schemeid varchar(26),
    groupconstrained boolean,
    shared boolean,
    totalmsgcountroot bigint,
    lastrootpostat bigint DEFAULT 0,
    bannerinfo jsonb,
    defaultcategoryname varchar(64) NOT NULL DEFAULT '',
    autotranslation boolean NOT NULL DEFAULT false,
    UNIQUE (name, teamid)
);
CREATE INDEX idx_channels_team_id_type ON channels (teamid, type);

CREATE TABLE channelmembers (
    channelid varchar(26) NOT NULL,
    userid varchar(26) NOT NULL,
    roles varchar(256),
    lastviewedat bigint,
    msgcount bigint,
    mentioncount bigint,
    notifyprops jsonb,
    lastupdateat bigint,
    schemeuser boolean,
    schemeadmin boolean,
    schemeguest boolean,
    mentioncountroot bigint,
    msgcountroot bigint,
    urgentmentioncount bigint,
    autotranslation boolean NOT NULL DEFAULT false,
    autotranslationdisabled boolean NOT NULL DEFAULT false,
    PRIMARY KEY (channelid, userid)
);
CREATE INDEX idx_channelmembers_user_id_channel_id_last_viewed_at ON channelmembers (userid, channelid, lastviewedat);

CREATE TABLE channelmemberhistory (
    channelid varchar(26) NOT NULL,
    userid varchar(26) NOT NULL,
    jointime bigint NOT NULL,
    leavetime bigint,
    PRIMARY KEY (channelid, userid, jointime)
);

CREATE TABLE posts (
    id varchar(26) NOT NULL PRIMARY KEY,
    createat bigint,
    updateat bigint,
    deleteat bigint,
    userid varchar(26),
    channelid varchar(26),
    rootid varchar(26),
    originalid varchar(26),
    message varchar(65535),
    type varchar(26),
    props jsonb,
    hashtags varchar(1000),
    filenames varchar(4000),
    fileids varchar(300),
    hasreactions boolean,
    editat bigint,
    ispinned boolean,
    remoteid varchar(26)
);
CREATE INDEX idx_posts_channel_id_delete_at_create_at ON posts (channelid, deleteat, createat);
CREATE INDEX idx_posts_root_id_delete_at ON posts (rootid, deleteat);
CREATE INDEX idx_posts_create_at_id ON posts (createat, id);
CREATE INDEX idx_posts_original_id ON posts (originalid);

CREATE TABLE postspriority (
    postid varchar(26) NOT NULL PRIMARY KEY,
    channelid varchar(26) NOT NULL,
    priority varchar(32) NOT NULL,
    requestedack boolean,
    persistentnotifications boolean
);

CREATE TABLE threads (
    postid varchar(26) NOT NULL PRIMARY KEY,
    replycount bigint,
    lastreplyat bigint,
    participants jsonb,
    channelid varchar(26),
    threaddeleteat bigint,
    threadteamid varchar(26)
);

CREATE TABLE fileinfo (
    id varchar(26) NOT NULL PRIMARY KEY,
    creatorid varchar(26),
    postid varchar(26),
    createat bigint,
    updateat bigint,
    deleteat bigint,
    path varchar(512),
    thumbnailpath varchar(512),
    previewpath varchar(512),
    name varchar(256),
    extension varchar(64),
    size bigint,
    mimetype varchar(256),
    width integer,
    height integer,
    haspreviewimage boolean,
    minipreview bytea,
    content text,
    remoteid varchar(26),
    archived boolean NOT NULL DEFAULT false,
    channelid varchar(26)
);
CREATE INDEX idx_fileinfo_postid_at ON fileinfo (postid);

CREATE TABLE reactions (
    userid varchar(26) NOT NULL,
    postid varchar(26) NOT NULL,
    emojiname varchar(64) NOT NULL,
    createat bigint,
    updateat bigint,
    deleteat bigint,
    remoteid varchar(26),
    channelid varchar(26) NOT NULL DEFAULT '',
    PRIMARY KEY (postid, userid, emojiname)
);
CREATE INDEX idx_reactions_channel_id ON reactions (channelid);

CREATE TABLE emoji (
    id varchar(26) NOT NULL PRIMARY KEY,
    createat bigint,
    updateat bigint,
    deleteat bigint,
    creatorid varchar(26),
    name varchar(64),
    UNIQUE (name, deleteat)
);

CREATE TABLE preferences (
    userid varchar(26) NOT NULL,
    category varchar(32) NOT NULL,
    name varchar(32) NOT NULL,
    value text,
    PRIMARY KEY (userid, category, name)
);

CREATE TABLE sidebarcategories (
    id varchar(128) NOT NULL PRIMARY KEY,
    userid varchar(26),
    teamid varchar(26),
    sortorder bigint,
    sorting varchar(64),
    type varchar(64),
    displayname varchar(64),
    muted boolean,
    collapsed boolean
);

CREATE TABLE sidebarchannels (
    channelid varchar(26) NOT NULL,
    userid varchar(26) NOT NULL,
    categoryid varchar(128) NOT NULL,
    sortorder bigint,
    PRIMARY KEY (channelid, userid, categoryid)
);

CREATE TABLE systems (
    name varchar(64) NOT NULL PRIMARY KEY,
    value varchar(1024)
);

CREATE TABLE db_migrations (
    version bigint NOT NULL PRIMARY KEY,
    name varchar NOT NULL
);

CREATE TABLE configurations (
    id varchar(26) NOT NULL PRIMARY KEY,
    value text NOT NULL,
    createat bigint NOT NULL,
    active boolean UNIQUE,
    sha char(64) NOT NULL DEFAULT ''
);
