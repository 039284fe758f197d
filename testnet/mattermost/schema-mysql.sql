-- Mattermost schema subset (MySQL/MariaDB, <= v10.x installs); see /work/shared/mattermost.md §2.3.
-- CamelCase table and column names (case-sensitive on Linux), bigint(20), tinyint(1) booleans,
-- JSON columns, utf8mb4, InnoDB. Columns mirror schema-postgres.sql.
SET NAMES utf8mb4;

CREATE TABLE Users (
    Id varchar(26) NOT NULL,
    CreateAt bigint(20) DEFAULT NULL,
    UpdateAt bigint(20) DEFAULT NULL,
    DeleteAt bigint(20) DEFAULT NULL,
    Username varchar(64) DEFAULT NULL,
    Password varchar(128) DEFAULT NULL,
    AuthData varchar(128) DEFAULT NULL,
    AuthService varchar(32) DEFAULT NULL,
    Email varchar(128) DEFAULT NULL,
    EmailVerified tinyint(1) DEFAULT NULL,
    Nickname varchar(64) DEFAULT NULL,
    FirstName varchar(64) DEFAULT NULL,
    LastName varchar(64) DEFAULT NULL,
    Roles varchar(256) DEFAULT NULL,
    AllowMarketing tinyint(1) DEFAULT NULL,
    Props JSON DEFAULT NULL,
    NotifyProps JSON DEFAULT NULL,
    LastPasswordUpdate bigint(20) DEFAULT NULL,
    LastPictureUpdate bigint(20) DEFAULT NULL,
    FailedAttempts int(11) DEFAULT NULL,
    Locale varchar(5) DEFAULT NULL,
    MfaActive tinyint(1) DEFAULT NULL,
    MfaSecret varchar(128) DEFAULT NULL,
    Position varchar(128) DEFAULT NULL,
    Timezone JSON DEFAULT NULL,
    RemoteId varchar(26) DEFAULT NULL,
    LastLogin bigint(20) NOT NULL DEFAULT 0,
    MfaUsedTimestamps JSON DEFAULT NULL,
    PRIMARY KEY (Id),
    UNIQUE KEY Username (Username),
    UNIQUE KEY AuthData (AuthData),
    UNIQUE KEY Email (Email)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE Bots (
    UserId varchar(26) NOT NULL,
    Description varchar(1024) DEFAULT NULL,
    OwnerId varchar(190) DEFAULT NULL,
    CreateAt bigint(20) DEFAULT NULL,
    UpdateAt bigint(20) DEFAULT NULL,
    DeleteAt bigint(20) DEFAULT NULL,
    LastIconUpdate bigint(20) DEFAULT NULL,
    PRIMARY KEY (UserId)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE Teams (
    Id varchar(26) NOT NULL,
    CreateAt bigint(20) DEFAULT NULL,
    UpdateAt bigint(20) DEFAULT NULL,
    DeleteAt bigint(20) DEFAULT NULL,
    DisplayName varchar(64) DEFAULT NULL,
    Name varchar(64) DEFAULT NULL,
    Description varchar(255) DEFAULT NULL,
    Email varchar(128) DEFAULT NULL,
    Type enum('I','O') DEFAULT NULL,
    CompanyName varchar(64) DEFAULT NULL,
    AllowedDomains text,
    InviteId varchar(32) DEFAULT NULL,
    SchemeId varchar(26) DEFAULT NULL,
    AllowOpenInvite tinyint(1) DEFAULT NULL,
    LastTeamIconUpdate bigint(20) DEFAULT NULL,
    GroupConstrained tinyint(1) DEFAULT NULL,
    CloudLimitsArchived tinyint(1) NOT NULL DEFAULT 0,
    PRIMARY KEY (Id),
    UNIQUE KEY Name (Name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE TeamMembers (
    TeamId varchar(26) NOT NULL,
    UserId varchar(26) NOT NULL,
    Roles varchar(256) DEFAULT NULL,
    DeleteAt bigint(20) DEFAULT NULL,
    SchemeUser tinyint(1) DEFAULT NULL,
    SchemeAdmin tinyint(1) DEFAULT NULL,
    SchemeGuest tinyint(1) DEFAULT NULL,
    CreateAt bigint(20) DEFAULT 0,
    PRIMARY KEY (TeamId, UserId),
    KEY idx_teammembers_user_id (UserId)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE Channels (
    Id varchar(26) NOT NULL,
    CreateAt bigint(20) DEFAULT NULL,
    UpdateAt bigint(20) DEFAULT NULL,
    DeleteAt bigint(20) DEFAULT NULL,
    TeamId varchar(26) DEFAULT NULL,
    Type enum('D','O','G','P') DEFAULT NULL,
    DisplayName varchar(64) DEFAULT NULL,
    Name varchar(64) DEFAULT NULL,
    Header text,
    Purpose varchar(250) DEFAULT NULL,
    LastPostAt bigint(20) DEFAULT NULL,
    TotalMsgCount bigint(20) DEFAULT NULL,
    ExtraUpdateAt bigint(20) DEFAULT NULL,
    CreatorId varchar(26) DEFAULT NULL,
    SchemeId varchar(26) DEFAULT NULL,
    GroupConstrained tinyint(1) DEFAULT NULL,
    Shared tinyint(1) DEFAULT NULL,
    TotalMsgCountRoot bigint(20) DEFAULT NULL,
    LastRootPostAt bigint(20) DEFAULT 0,
    BannerInfo JSON DEFAULT NULL,
    DefaultCategoryName varchar(64) NOT NULL DEFAULT '',
    AutoTranslation tinyint(1) NOT NULL DEFAULT 0,
    PRIMARY KEY (Id),
    UNIQUE KEY Name (Name, TeamId),
    KEY idx_channels_team_id_type (TeamId, Type)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE ChannelMembers (
    ChannelId varchar(26) NOT NULL,
    UserId varchar(26) NOT NULL,
    Roles varchar(256) DEFAULT NULL,
    LastViewedAt bigint(20) DEFAULT NULL,
    MsgCount bigint(20) DEFAULT NULL,
    MentionCount bigint(20) DEFAULT NULL,
    NotifyProps JSON DEFAULT NULL,
    LastUpdateAt bigint(20) DEFAULT NULL,
    SchemeUser tinyint(1) DEFAULT NULL,
    SchemeAdmin tinyint(1) DEFAULT NULL,
    SchemeGuest tinyint(1) DEFAULT NULL,
    MentionCountRoot bigint(20) DEFAULT NULL,
    MsgCountRoot bigint(20) DEFAULT NULL,
    UrgentMentionCount bigint(20) DEFAULT NULL,
    AutoTranslation tinyint(1) NOT NULL DEFAULT 0,
    AutoTranslationDisabled tinyint(1) NOT NULL DEFAULT 0,
    PRIMARY KEY (ChannelId, UserId),
    KEY idx_channelmembers_user_id_channel_id_last_viewed_at (UserId, ChannelId, LastViewedAt)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE ChannelMemberHistory (
    ChannelId varchar(26) NOT NULL,
    UserId varchar(26) NOT NULL,
    JoinTime bigint(20) NOT NULL,
    LeaveTime bigint(20) DEFAULT NULL,
    PRIMARY KEY (ChannelId, UserId, JoinTime)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE Posts (
    Id varchar(26) NOT NULL,
    CreateAt bigint(20) DEFAULT NULL,
    UpdateAt bigint(20) DEFAULT NULL,
    DeleteAt bigint(20) DEFAULT NULL,
    UserId varchar(26) DEFAULT NULL,
    ChannelId varchar(26) DEFAULT NULL,
    RootId varchar(26) DEFAULT NULL,
    OriginalId varchar(26) DEFAULT NULL,
    Message text,
    Type varchar(26) DEFAULT NULL,
    Props JSON DEFAULT NULL,
    Hashtags text,
    Filenames text,
    FileIds text,
    HasReactions tinyint(1) DEFAULT NULL,
    EditAt bigint(20) DEFAULT NULL,
    IsPinned tinyint(1) DEFAULT NULL,
    RemoteId varchar(26) DEFAULT NULL,
    PRIMARY KEY (Id),
    KEY idx_posts_channel_id_delete_at_create_at (ChannelId, DeleteAt, CreateAt),
    KEY idx_posts_root_id_delete_at (RootId, DeleteAt),
    KEY idx_posts_create_at_id (CreateAt, Id),
    KEY idx_posts_original_id (OriginalId)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE PostsPriority (
    PostId varchar(26) NOT NULL,
    ChannelId varchar(26) NOT NULL,
    Priority varchar(32) NOT NULL,
    RequestedAck tinyint(1) DEFAULT NULL,
    PersistentNotifications tinyint(1) DEFAULT NULL,
    PRIMARY KEY (PostId)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE Threads (
    PostId varchar(26) NOT NULL,
    ReplyCount bigint(20) DEFAULT NULL,
    LastReplyAt bigint(20) DEFAULT NULL,
    Participants JSON DEFAULT NULL,
    ChannelId varchar(26) DEFAULT NULL,
    ThreadDeleteAt bigint(20) DEFAULT NULL,
    ThreadTeamId varchar(26) DEFAULT NULL,
    PRIMARY KEY (PostId)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE FileInfo (
    Id varchar(26) NOT NULL,
    CreatorId varchar(26) DEFAULT NULL,
    PostId varchar(26) DEFAULT NULL,
    CreateAt bigint(20) DEFAULT NULL,
    UpdateAt bigint(20) DEFAULT NULL,
    DeleteAt bigint(20) DEFAULT NULL,
    Path text,
    ThumbnailPath text,
    PreviewPath text,
    Name text,
    Extension varchar(64) DEFAULT NULL,
    Size bigint(20) DEFAULT NULL,
    MimeType text,
    Width int(11) DEFAULT NULL,
    Height int(11) DEFAULT NULL,
    HasPreviewImage tinyint(1) DEFAULT NULL,
    MiniPreview mediumblob,
    Content longtext,
    RemoteId varchar(26) DEFAULT NULL,
    Archived tinyint(1) NOT NULL DEFAULT 0,
    ChannelId varchar(26) DEFAULT NULL,
    PRIMARY KEY (Id),
    KEY idx_fileinfo_postid_at (PostId)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE Reactions (
    UserId varchar(26) NOT NULL,
    PostId varchar(26) NOT NULL,
    EmojiName varchar(64) NOT NULL,
    CreateAt bigint(20) DEFAULT NULL,
    UpdateAt bigint(20) DEFAULT NULL,
    DeleteAt bigint(20) DEFAULT NULL,
    RemoteId varchar(26) DEFAULT NULL,
    ChannelId varchar(26) NOT NULL DEFAULT '',
    PRIMARY KEY (PostId, UserId, EmojiName),
    KEY idx_reactions_channel_id (ChannelId)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE Emoji (
    Id varchar(26) NOT NULL,
    CreateAt bigint(20) DEFAULT NULL,
    UpdateAt bigint(20) DEFAULT NULL,
    DeleteAt bigint(20) DEFAULT NULL,
    CreatorId varchar(26) DEFAULT NULL,
    Name varchar(64) DEFAULT NULL,
    PRIMARY KEY (Id),
    UNIQUE KEY Name (Name, DeleteAt)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE Preferences (
    UserId varchar(26) NOT NULL,
    Category varchar(32) NOT NULL,
    Name varchar(32) NOT NULL,
    Value text,
    PRIMARY KEY (UserId, Category, Name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE SidebarCategories (
    Id varchar(128) NOT NULL,
    UserId varchar(26) DEFAULT NULL,
    TeamId varchar(26) DEFAULT NULL,
    SortOrder bigint(20) DEFAULT NULL,
    Sorting varchar(64) DEFAULT NULL,
    Type varchar(64) DEFAULT NULL,
    DisplayName varchar(64) DEFAULT NULL,
    Muted tinyint(1) DEFAULT NULL,
    Collapsed tinyint(1) DEFAULT NULL,
    PRIMARY KEY (Id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE SidebarChannels (
    ChannelId varchar(26) NOT NULL,
    UserId varchar(26) NOT NULL,
    CategoryId varchar(128) NOT NULL,
    SortOrder bigint(20) DEFAULT NULL,
    PRIMARY KEY (ChannelId, UserId, CategoryId)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE Systems (
    Name varchar(64) NOT NULL,
    Value varchar(1024) DEFAULT NULL,
    PRIMARY KEY (Name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- morph's bookkeeping table keeps its lower-case name on MySQL too.
CREATE TABLE db_migrations (
    Version bigint(20) NOT NULL,
    Name varchar(64) NOT NULL,
    PRIMARY KEY (Version)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE Configurations (
    Id varchar(26) NOT NULL,
    Value longtext NOT NULL,
    CreateAt bigint(20) NOT NULL,
    Active tinyint(1) DEFAULT NULL,
    SHA char(64) NOT NULL DEFAULT '',
    PRIMARY KEY (Id),
    UNIQUE KEY Active (Active)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
